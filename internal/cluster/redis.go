package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"poi/internal/testenv"
)

// SentinelMaster is the name the Sentinels of RedisHA monitor.
const SentinelMaster = "poi"

// RedisHA is a Redis primary with one replica and three Sentinels, each a
// real process on loopback. After a failover the replica is the primary.
type RedisHA struct {
	tb        testing.TB
	Nodes     [2]*redisProc // started as primary (0) and replica (1)
	Sentinels [3]*redisProc
}

type redisProc struct {
	Port int
	args []string
	cmd  *exec.Cmd
}

// StartRedisHA starts the primary, its replica and three Sentinels with a
// quorum of two and a one-second down-after, and waits until every Sentinel
// knows the replica and the other Sentinels.
func StartRedisHA(tb testing.TB) *RedisHA {
	tb.Helper()
	r := &RedisHA{tb: tb}
	for i := range r.Nodes {
		port := testenv.FreePort(tb)
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", tb.TempDir(), "--save", "", "--appendonly", "no"}
		if i == 1 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(r.Nodes[0].Port))
		}
		r.Nodes[i] = &redisProc{Port: port, args: args}
		r.start(r.Nodes[i], "redis-server")
	}
	for i := range r.Sentinels {
		port := testenv.FreePort(tb)
		conf := filepath.Join(tb.TempDir(), "sentinel.conf")
		// A Sentinel rewrites its file with what it learns: it must be its own.
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\nsentinel parallel-syncs %s 1\n",
			port, SentinelMaster, r.Nodes[0].Port, SentinelMaster, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
		r.Sentinels[i] = &redisProc{Port: port, args: []string{conf, "--sentinel"}}
		r.start(r.Sentinels[i], sentinelBinary())
	}
	tb.Cleanup(func() {
		for _, p := range append(r.Sentinels[:], r.Nodes[:]...) {
			p.stop()
		}
	})
	r.waitTopology()
	return r
}

// sentinelBinary is Debian's redis-sentinel where installed; redis-server
// in --sentinel mode is the same program.
func sentinelBinary() string {
	if _, err := exec.LookPath("redis-sentinel"); err == nil {
		return "redis-sentinel"
	}
	return "redis-server"
}

func (r *RedisHA) start(p *redisProc, bin string) {
	r.tb.Helper()
	p.cmd = exec.Command(bin, p.args...)
	if err := p.cmd.Start(); err != nil {
		r.tb.Fatalf("cluster: start %s: %v", bin, err)
	}
	c := redis.NewClient(&redis.Options{Addr: addr(p.Port)})
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
			r.tb.Fatalf("cluster: %s on port %d not answering: %v", bin, p.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *redisProc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func (r *RedisHA) waitTopology() {
	r.tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range r.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr(s.Port)})
		for {
			m, err1 := c.Master(ctx, SentinelMaster).Result()
			reps, err2 := c.Replicas(ctx, SentinelMaster).Result()
			if err1 == nil && err2 == nil && m["num-other-sentinels"] == "2" && len(reps) == 1 && reps[0]["flags"] == "slave" {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				r.tb.Fatalf("cluster: sentinel %d does not see the topology: %v %v %v %v", s.Port, m, reps, err1, err2)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
	}
}

// SentinelAddrs are the Sentinels' host:port, as redis.sentinel_addrs.
func (r *RedisHA) SentinelAddrs() []string {
	var out []string
	for _, s := range r.Sentinels {
		out = append(out, addr(s.Port))
	}
	return out
}

// Primary returns the index into Nodes of the server the Sentinels name
// as primary, or -1 if none answers for it.
func (r *RedisHA) Primary(ctx context.Context) int {
	for _, s := range r.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr(s.Port)})
		a, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		c.Close()
		if err != nil || len(a) != 2 {
			continue
		}
		for i, n := range r.Nodes {
			if a[1] == strconv.Itoa(n.Port) {
				return i
			}
		}
	}
	return -1
}

// Kill SIGKILLs data node i (its unsynced writes are gone).
func (r *RedisHA) Kill(i int) { r.Nodes[i].stop() }

// Client connects to data node i directly.
func (r *RedisHA) Client(i int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr(r.Nodes[i].Port)})
}
