// Package embedded starts the in-process servers that let one `poi run`
// work with no infrastructure: a nats-server with JetStream and an MQTT
// broker. In a cluster both are external and this package is not used.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"poi/internal/config"
)

// MaxPayload is the largest NATS message the service sends.
const MaxPayload = 16 << 20

// NATS is an embedded nats-server with JetStream on file storage.
type NATS struct {
	srv *server.Server
}

// StartNATS starts nats-server on host:port (port 0 picks a free one) with
// JetStream files under dataDir/jetstream, and waits until it accepts clients.
func StartNATS(host string, port int, dataDir string, log *slog.Logger) (*NATS, error) {
	opts := &server.Options{
		ServerName: "poi-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(dataDir, "jetstream"),
		// The process owns signal handling; the server must not exit on its own.
		NoSigs: true,
		NoLog:  true,
		// Frames and enrollment photos travel whole (up to 10 MB each);
		// an external server needs max_payload of at least this much.
		MaxPayload: MaxPayload,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s within 10s (port in use?)", net.JoinHostPort(host, fmt.Sprint(port)))
	}
	log.Info("embedded nats-server started", "url", srv.ClientURL(), "store", opts.StoreDir)
	return &NATS{srv: srv}, nil
}

// InProcess is the server for nats.InProcessServer: clients in the same
// process connect to it without a socket.
func (n *NATS) InProcess() nats.InProcessConnProvider { return n.srv }

// URL is the client URL of the server.
func (n *NATS) URL() string { return n.srv.ClientURL() }

// Shutdown stops the server and waits for it, bounded by ctx.
func (n *NATS) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("embedded nats shutdown: %w", ctx.Err())
	}
}

// MQTT is an embedded MQTT 3.1.1/5 broker (mochi-mqtt) on one TCP listener.
type MQTT struct {
	srv  *mqtt.Server
	addr string
	log  *slog.Logger
}

// MQTTOptions configures the embedded broker.
type MQTTOptions struct {
	// MaxInflight bounds the QoS 1 messages the broker keeps per client
	// unacknowledged (mochi's maximum_inflight); beyond it the broker
	// refuses to forward them, counted by Dropped.
	MaxInflight int
	// Accounts are the clients allowed in. None: every client is allowed,
	// which StartMQTT accepts only on a loopback address.
	Accounts []Account
}

// StartMQTT listens on addr ("127.0.0.1:0" picks a free port) and serves.
// It binds the socket itself and hands it to the broker, so a port in use is
// an error now, not a log line from a goroutine later, and ":0" has no race.
func StartMQTT(addr string, o MQTTOptions, log *slog.Logger) (*MQTT, error) {
	if len(o.Accounts) == 0 && !config.IsLoopback(addr) {
		return nil, fmt.Errorf("embedded mqtt: %s is reachable beyond this host: configure mqtt.accounts", addr)
	}
	var hook mqtt.Hook = new(auth.AllowHook)
	if len(o.Accounts) > 0 {
		h, err := newAccountsHook(o.Accounts)
		if err != nil {
			return nil, fmt.Errorf("embedded mqtt: %w", err)
		}
		hook = h
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded mqtt: listen %s: %w", addr, err)
	}
	opts := &mqtt.Options{InlineClient: false, Logger: log.With("component", "mqtt-broker")}
	if o.MaxInflight > 0 {
		caps := mqtt.NewDefaultServerCapabilities()
		caps.MaximumInflight = uint16(min(o.MaxInflight, 65535))
		opts.Capabilities = caps
	}
	srv := mqtt.New(opts)
	if err := srv.AddHook(hook, nil); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded mqtt: %w", err)
	}
	if err := srv.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded mqtt: listener %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded mqtt: serve: %w", err)
	}
	log.Info("embedded mqtt broker started", "addr", ln.Addr().String(), "accounts", len(o.Accounts))
	return &MQTT{srv: srv, addr: ln.Addr().String(), log: log}, nil
}

// Dropped counts the messages the broker did not forward to a subscriber
// because of its own limits (a client's inflight store or write buffer
// full): with persistent sessions and held acknowledgements, the only
// way a message the broker accepted is lost.
func (m *MQTT) Dropped() int64 {
	return atomic.LoadInt64(&m.srv.Info.InflightDropped) + atomic.LoadInt64(&m.srv.Info.MessagesDropped)
}

// Addr is the host:port the broker listens on.
func (m *MQTT) Addr() string { return m.addr }

// Shutdown disconnects every client and stops the broker. mochi writes to
// a client with no deadline, so one that stopped reading (a stopped process,
// a wedged client) would hold the close for ever; once ctx is done every
// connection's deadline is set to now, the blocked writes fail, and the
// close completes without them.
func (m *MQTT) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- m.srv.Close() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cut := 0
		for _, cl := range m.srv.Clients.GetAll() {
			if cl.Net.Conn != nil && cl.Net.Conn.SetDeadline(time.Now()) == nil {
				cut++
			}
		}
		m.log.Warn("embedded mqtt broker: clients not disconnected in time, connections cut", "clients", cut, "error", ctx.Err())
		err = <-done
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("embedded mqtt shutdown: %w", err)
	}
	return nil
}
