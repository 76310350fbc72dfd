// Package node assembles one process of the service from its roles (bridge,
// worker pools, API) and runs them under one run.Group, so that there is one
// start-up order and one shutdown path.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"

	"poi/api"
	"poi/internal/config"
	"poi/internal/embedded"
	"poi/internal/metrics"
	"poi/internal/mqttclient"
	"poi/internal/store"
	"poi/streams"
	"poi/workers/partition"
)

// Roles says what this process does.
type Roles struct {
	// Embedded starts the in-process NATS and MQTT servers where no
	// external URL is configured (the all-in-one `poi run`).
	Embedded bool
	Bridge   bool
	API      bool
	Pools    []string
}

// Node is a running process: its connections and components.
type Node struct {
	cfg   config.Config
	roles Roles
	log   *slog.Logger

	natsSrv *embedded.NATS
	mqttSrv *embedded.MQTT
	nc      *nats.Conn
	js      jetstream.JetStream
	store   *store.Store
	mqtt    *mqttclient.Client
	api     *api.Server
	closers []func() error
	metrics *metrics.Metrics
	actors  []actor
	// partitions is the tracker's partition group (index pool), nil
	// elsewhere.
	partitions *partition.Group

	// Ready is closed once every component has started.
	Ready chan struct{}
}

// OwnedPartitions lists the tracker partitions this process owns.
func (n *Node) OwnedPartitions() []int {
	if n.partitions == nil {
		return nil
	}
	return n.partitions.Owned()
}

// actor is one long-running component: run until ctx ends, then return.
type actor struct {
	name string
	run  func(ctx context.Context) error
}

// New checks the roles; Run does the work.
func New(cfg config.Config, roles Roles, log *slog.Logger) (*Node, error) {
	for _, p := range roles.Pools {
		if !knownPool(p) {
			return nil, fmt.Errorf("unknown worker pool %q (want detect, embed, index, alert)", p)
		}
	}
	return &Node{cfg: cfg, roles: roles, log: log, metrics: metrics.New(), Ready: make(chan struct{})}, nil
}

func knownPool(p string) bool {
	switch p {
	case "detect", "embed", "index", "alert":
		return true
	}
	return false
}

// Run starts everything, serves until ctx is cancelled, then shuts down
// within the configured shutdown timeout. A start-up failure is returned
// after whatever had started was closed again.
func (n *Node) Run(ctx context.Context) (err error) {
	// The shutdown budget is split: the pools drain for up to half of it
	// (pool.Config.DrainTimeout), closing connections and servers gets the
	// other half, so the process is gone within shutdown_timeout.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout/2)
		defer cancel()
		err = errors.Join(err, n.close(cctx))
	}()
	if err := n.start(ctx); err != nil {
		return err
	}

	var g run.Group
	{
		gctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			<-gctx.Done()
			return nil
		}, func(error) { cancel() })
	}
	for _, a := range n.actors {
		actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		g.Add(func() error {
			if err := a.run(actx); err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			return nil
		}, func(error) { cancel() })
	}
	if n.api != nil {
		g.Add(n.api.Serve, func(error) {
			sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
			defer cancel()
			if err := n.api.Shutdown(sctx); err != nil {
				n.log.Warn("api shutdown", "error", err)
			}
		})
	}
	close(n.Ready)
	n.log.Info("ready", "bridge", n.roles.Bridge, "api", n.roles.API, "pools", n.roles.Pools, "nats", n.nc.ConnectedUrlRedacted())
	err = g.Run()
	n.log.Info("shutting down")
	return err
}

func (n *Node) start(ctx context.Context) error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data_dir %s: %w", n.cfg.DataDir, err)
	}
	natsURL := n.cfg.NATS.URL
	if n.cfg.NATS.Embedded() {
		if n.roles.Embedded {
			port := n.cfg.NATS.EmbeddedPort
			if port == 0 {
				port = -1 // nats-server's "any free port"
			}
			srv, err := embedded.StartNATS(n.cfg.NATS.EmbeddedHost, port, n.cfg.DataDir, n.log)
			if err != nil {
				return fmt.Errorf("nats.embedded_port: %w", err)
			}
			n.natsSrv = srv
			natsURL = srv.URL()
		} else {
			natsURL = "nats://" + net.JoinHostPort(n.cfg.NATS.EmbeddedHost, strconv.Itoa(n.cfg.NATS.EmbeddedPort))
		}
	}
	opts, err := natsAuth(n.cfg.NATS)
	if err != nil {
		return err
	}
	if n.natsSrv != nil {
		// The process's own server: connect without TCP, which saves two
		// system calls and a copy per message each way on every stage.
		opts = append(opts, nats.InProcessServer(n.natsSrv.InProcess()))
	}
	nc, err := nats.Connect(natsURL, append(opts,
		nats.Name("poi"),
		nats.Timeout(n.cfg.NATS.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own close at shutdown
				n.log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { n.log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	)...)
	if err != nil {
		return fmt.Errorf("nats.url %q: connect: %w", config.RedactURL(natsURL), err)
	}
	n.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	n.js = js
	dctx, cancel := context.WithTimeout(ctx, n.cfg.NATS.DeclareTimeout)
	defer cancel()
	limits := streams.DefaultLimits().WithRetention(n.cfg.Pipeline.Retention, n.cfg.Pipeline.Unmatched())
	limits.AuditRetention = n.cfg.Audit.Retention
	pt := n.cfg.Partitions
	limits.Partitions, limits.PartitionAckWait, limits.PinnedTTL, limits.MemberTTL = pt.Count, pt.AckWait, pt.PinnedTTL, pt.MemberTTL
	limits.PartitionMaxAckPending = 2 * pt.Batch
	limits.Replicas = n.cfg.NATS.Replicas
	if err := streams.Declare(dctx, js, limits, n.cfg.Pipeline.MaxDeliver, n.log); err != nil {
		return err
	}

	rc := n.cfg.Redis
	st, err := store.OpenOptions(store.Options{URL: rc.URL, KeyPrefix: rc.KeyPrefix,
		SentinelAddrs: rc.SentinelAddrs, SentinelMaster: rc.SentinelMaster,
		WaitReplicas: rc.WaitReplicas, WaitTimeout: rc.WaitTimeout, Log: n.log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("redis.url: %w", err)
	}
	n.store = st
	pctx, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if err := st.Ping(pctx); err != nil {
		// Redis down at start is a degraded state the status endpoint
		// reports, not a reason to refuse to start.
		n.log.Warn("redis not reachable at start", "url", config.RedactURL(n.cfg.Redis.URL), "error", err)
	}

	if n.roles.Bridge || n.roles.API || n.hasPool("alert") {
		if n.cfg.MQTT.Embedded() && n.roles.Embedded {
			srv, err := embedded.StartMQTT(n.cfg.MQTT.EmbeddedAddr, embeddedMQTTOptions(n.cfg.MQTT), n.log)
			if err != nil {
				return fmt.Errorf("mqtt.embedded_addr: %w", err)
			}
			n.mqttSrv = srv
			n.metrics.AddBrokerDropped(func() float64 { return float64(srv.Dropped()) })
		}
		url := n.cfg.MQTT.BrokerURL()
		if n.mqttSrv != nil {
			url = "tcp://" + n.mqttSrv.Addr()
		}
		tc, err := n.cfg.MQTT.TLS.Config()
		if err != nil {
			return fmt.Errorf("mqtt.tls: %w", err)
		}
		o := mqttclient.Options{
			URL: url, Username: n.cfg.MQTT.Username, Password: n.cfg.MQTT.Password,
			ConnectTimeout: n.cfg.MQTT.ConnectTimeout, ManualAck: true, TLS: tc,
		}
		if n.roles.Bridge {
			// The bridge's session outlives its connections, so that QoS 1
			// messages not yet stored in JetStream are resent after a
			// reconnect or a restart; that needs an id that stays.
			o.Persistent, o.ClientID = true, n.cfg.MQTT.BridgeClientID()
		}
		cl, err := mqttclient.New(o, n.log.With("component", "mqtt"))
		if err != nil {
			return fmt.Errorf("mqtt: %w", err)
		}
		n.mqtt = cl
	}
	// The roles subscribe before the first connection: a persistent
	// session delivers what it kept the moment it is up.
	if err := n.startRoles(ctx); err != nil {
		return err
	}
	if n.mqtt != nil {
		if err := n.mqtt.Start(ctx); err != nil {
			n.log.Warn("mqtt not connected yet", "error", err)
		}
	}
	return nil
}

func (n *Node) mqttConnected() bool { return n.mqtt != nil && n.mqtt.IsConnected() }

// NATSURL is the URL this process's NATS connection uses (after Ready).
func (n *Node) NATSURL() string { return n.nc.ConnectedUrl() }

// MQTTURL is the broker this process's MQTT client uses: the embedded
// broker's actual address when it runs one.
func (n *Node) MQTTURL() string {
	if n.mqttSrv != nil {
		return "tcp://" + n.mqttSrv.Addr()
	}
	return n.cfg.MQTT.BrokerURL()
}

// APIAddr is the address the API listens on (after Ready).
func (n *Node) APIAddr() string {
	if n.api == nil {
		return ""
	}
	return n.api.Addr()
}

// close releases everything in reverse order of start: input first, the
// bus and the embedded servers last, so in-flight work can still finish.
func (n *Node) close(ctx context.Context) error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	if n.mqtt != nil {
		n.mqtt.Close(250 * time.Millisecond)
	}
	if n.nc != nil {
		if err := drain(ctx, n.nc); err != nil {
			errs = append(errs, err)
		}
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("redis close: %w", err))
		}
	}
	if n.mqttSrv != nil {
		if err := n.mqttSrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if n.natsSrv != nil {
		if err := n.natsSrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// drain flushes pending publishes and lets subscriptions finish, bounded by ctx.
func drain(ctx context.Context, nc *nats.Conn) error {
	if nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return nil
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("nats drain: %w", ctx.Err())
	}
}

// Metrics are this process's collectors.
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// embeddedMQTTOptions maps the configuration onto the embedded broker's.
func embeddedMQTTOptions(c config.MQTT) embedded.MQTTOptions {
	o := embedded.MQTTOptions{MaxInflight: c.EmbeddedMaxInflight}
	for _, a := range c.Accounts {
		o.Accounts = append(o.Accounts, embedded.Account{Username: a.Username, Password: a.Password, PasswordHash: a.PasswordHash, Cameras: a.Cameras, Topics: a.Topics})
	}
	return o
}

// natsAuth turns the NATS credentials and TLS settings into client options.
func natsAuth(c config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		opts = append(opts, o)
	case c.Username != "":
		opts = append(opts, nats.UserInfo(c.Username, c.Password))
	}
	tc, err := c.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("nats.tls: %w", err)
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}
