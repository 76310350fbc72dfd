package node

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"poi/internal/config"
	"poi/internal/testenv"
	"poi/streams"
)

// TestNATSCredentialsAndTLS runs a nats-server as a secured deployment
// runs it: TLS with a private CA, client certificates required, and users
// by password and by nkey. The nats.* settings connect and declare every
// stream; a wrong password, a missing CA or a missing client certificate
// are refused.
func TestNATSCredentialsAndTLS(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: files.ServerCert, KeyFile: files.ServerKey, CaFile: files.CA, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := filepath.Join(t.TempDir(), "poi.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 5,
		Users: []*server.User{{Username: "poi", Password: "service-secret"}},
		Nkeys: []*server.NkeyUser{{Nkey: pub}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	mTLS := config.TLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey}
	connect := func(c config.NATS) (*nats.Conn, error) {
		opts, err := natsAuth(c)
		if err != nil {
			return nil, err
		}
		return nats.Connect(url, append(opts, nats.Timeout(5*time.Second), nats.MaxReconnects(0))...)
	}

	for name, c := range map[string]config.NATS{
		"password": {Username: "poi", Password: "service-secret", TLS: mTLS},
		"nkey":     {NKeyFile: seedFile, TLS: mTLS},
	} {
		nc, err := connect(c)
		if err != nil {
			t.Fatalf("%s: connect: %v", name, err)
		}
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = streams.Declare(ctx, js, streams.DefaultLimits(), 1, slog.New(slog.NewTextHandler(io.Discard, nil)))
		cancel()
		nc.Close()
		if err != nil {
			t.Fatalf("%s: declare the streams: %v", name, err)
		}
	}

	for name, c := range map[string]struct {
		nats config.NATS
		want string
	}{
		"wrong password":        {config.NATS{Username: "poi", Password: "guess", TLS: mTLS}, "authorization"},
		"no credentials":        {config.NATS{TLS: mTLS}, "authorization"},
		"the system's CAs":      {config.NATS{Username: "poi", Password: "service-secret", TLS: config.TLS{CertFile: files.ClientCert, KeyFile: files.ClientKey}}, "certificate"},
		"no client certificate": {config.NATS{Username: "poi", Password: "service-secret", TLS: config.TLS{CAFile: files.CA}}, ""},
	} {
		nc, err := connect(c.nats)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
			continue
		}
		if !strings.Contains(strings.ToLower(err.Error()), c.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, c.want)
		}
	}
}
