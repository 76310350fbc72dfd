package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"poi/internal/embedded"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// servers in child processes whose port the test must know in advance. It
// picks below Linux's ephemeral range (32768-60999): ports the kernel hands
// out for ":0" and for outgoing connections of parallel tests would be
// taken again within moments.
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	tb.Fatalf("testenv: no free port found")
	return 0
}

// Redis is a real redis-server process owned by one test, on its own port,
// so that test packages running in parallel never share data.
type Redis struct {
	tb   testing.TB
	Port int
	dir  string
	cmd  *exec.Cmd
	// durable servers write every command to an append-only file, so a
	// killed and restarted server comes back with its data.
	durable bool
}

// StartRedis starts redis-server (installed by set-up) on a free port and
// stops it when the test ends.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("testenv: redis-server is not installed (run `go tool task setup`): %v", err)
	}
	r := &Redis{tb: tb, Port: FreePort(tb), dir: tb.TempDir()}
	r.Start()
	tb.Cleanup(r.Stop)
	return r
}

// StartDurableRedis is StartRedis with every write fsynced to an
// append-only file: Stop then Start is an outage, not a data loss.
func StartDurableRedis(tb testing.TB) *Redis {
	tb.Helper()
	r := &Redis{tb: tb, Port: FreePort(tb), dir: tb.TempDir(), durable: true}
	r.Start()
	tb.Cleanup(r.Stop)
	return r
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

// Start (re)starts the server on its port and waits until it answers.
func (r *Redis) Start() {
	r.tb.Helper()
	aof := []string{"--appendonly", "no"}
	if r.durable {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	r.cmd = exec.Command("redis-server", append([]string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", ""}, aof...)...)
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatalf("testenv: start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("testenv: redis-server on port %d not answering: %v", r.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server and waits for it to exit.
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// NATS starts an embedded nats-server with JetStream (a real server, in
// process) on a free port for one test, and connects to it.
func NATS(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	srv, err := embedded.StartNATS("127.0.0.1", -1, tb.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close(); _ = srv.Shutdown(context.Background()) })
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// MQTT starts the embedded MQTT broker on a free loopback port for one test,
// logging to log. Its shutdown at cleanup is bounded: a client the test left
// connected and not reading cannot hold it.
func MQTT(tb testing.TB, o embedded.MQTTOptions, log *slog.Logger) *embedded.MQTT {
	tb.Helper()
	m, err := embedded.StartMQTT("127.0.0.1:0", o, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			tb.Error(err)
		}
	})
	return m
}
