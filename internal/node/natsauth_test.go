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

	"github.com/nats-io/jwt/v2"
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
	srv := startNATS(t, &server.Options{
		TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 5,
		Users: []*server.User{{Username: "poi", Password: "service-secret"}},
		Nkeys: []*server.NkeyUser{{Nkey: pub}},
	})
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
		declareAs(t, nc, name)
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

// TestNATSCredsFileOfAnOperator runs a nats-server in operator mode, as a
// deployment with decentralised JWT authentication does: an operator signs
// the account (with JetStream enabled), the account signs the user, and
// nats.creds_file holds the user's JWT and seed. The service connects and
// declares every stream; a user signed by an account the server does not
// trust is refused.
func TestNATSCredsFileOfAnOperator(t *testing.T) {
	op := mustKeys(t, nkeys.CreateOperator)
	opPub, _ := op.PublicKey()
	account := func(name string, jetStream bool) (string, nkeys.KeyPair, string) {
		acc := mustKeys(t, nkeys.CreateAccount)
		pub, _ := acc.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if jetStream {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit}
		}
		tok, err := ac.Encode(op)
		if err != nil {
			t.Fatal(err)
		}
		return pub, acc, tok
	}
	resolver := &server.MemAccResolver{}
	// The server needs a system account of the operator for JetStream.
	sysPub, _, sysJWT := account("SYS", false)
	accPub, acc, accJWT := account("poi", true)
	for pub, tok := range map[string]string{sysPub: sysJWT, accPub: accJWT} {
		if err := resolver.Store(pub, tok); err != nil {
			t.Fatal(err)
		}
	}
	opClaims := jwt.NewOperatorClaims(opPub)
	opClaims.Name, opClaims.SystemAccount = "poi-test-operator", sysPub
	if _, err := opClaims.Encode(op); err != nil {
		t.Fatal(err)
	}
	srv := startNATS(t, &server.Options{
		TrustedOperators: []*jwt.OperatorClaims{opClaims}, AccountResolver: resolver, SystemAccount: sysPub,
	})

	creds := func(signer nkeys.KeyPair) string {
		user := mustKeys(t, nkeys.CreateUser)
		pub, _ := user.PublicKey()
		tok, err := jwt.NewUserClaims(pub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := user.Seed()
		b, err := jwt.FormatUserConfig(tok, seed)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "poi.creds")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	connect := func(credsFile string) (*nats.Conn, error) {
		opts, err := natsAuth(config.NATS{CredsFile: credsFile})
		if err != nil {
			return nil, err
		}
		return nats.Connect(srv.ClientURL(), append(opts, nats.Timeout(5*time.Second), nats.MaxReconnects(0))...)
	}

	nc, err := connect(creds(acc))
	if err != nil {
		t.Fatalf("connect with the creds file: %v", err)
	}
	declareAs(t, nc, "the creds file's user")

	_, stranger, _ := account("stranger", true) // signed by the operator, unknown to the resolver
	if nc, err := connect(creds(stranger)); err == nil {
		nc.Close()
		t.Error("a user of an account the server does not know connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("a user of an unknown account: %v, want an authorization error", err)
	}
}

func mustKeys(t *testing.T, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// startNATS runs a JetStream nats-server on a free loopback port with o's
// security settings, until the test ends.
func startNATS(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	o.Host, o.Port, o.JetStream, o.StoreDir, o.NoSigs, o.NoLog = "127.0.0.1", -1, true, t.TempDir(), true, true
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// declareAs declares every stream over nc (then closes it), as the service
// does at start: what the connection's user may do is enough to run.
func declareAs(t *testing.T, nc *nats.Conn, who string) {
	t.Helper()
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := streams.Declare(ctx, js, streams.DefaultLimits(), 1, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("%s: declare the streams: %v", who, err)
	}
}
