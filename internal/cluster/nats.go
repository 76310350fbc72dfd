// Package cluster starts the multi-node infrastructure a clustered
// deployment runs on, as real servers on loopback, for tests: a JetStream
// cluster of embedded nats-servers (each with its own client and cluster
// port, routed to the others), and Redis with a replica watched by
// Sentinels (Debian's redis-server and redis-sentinel).
package cluster

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/embedded"
	"poi/internal/testenv"
)

// NATSCluster is a JetStream cluster of embedded nats-servers in the test
// process. Nodes keep their ports and store directories across Kill and
// Restart, as a server that crashed and came back would.
type NATSCluster struct {
	tb    testing.TB
	Name  string
	nodes []*natsNode
}

type natsNode struct {
	opts *server.Options
	srv  *server.Server
}

// StartNATS starts n nodes of one JetStream cluster and waits until they
// have elected a meta leader.
func StartNATS(tb testing.TB, n int) *NATSCluster {
	tb.Helper()
	c := &NATSCluster{tb: tb, Name: "poi-test"}
	clusterPorts := make([]int, n)
	for i := range n {
		clusterPorts[i] = testenv.FreePort(tb)
	}
	var routes []*url.URL
	for _, p := range clusterPorts {
		routes = append(routes, &url.URL{Scheme: "nats", Host: "127.0.0.1:" + strconv.Itoa(p)})
	}
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{opts: &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       testenv.FreePort(tb),
			JetStream:  true,
			StoreDir:   filepath.Join(tb.TempDir(), "jetstream"),
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: embedded.MaxPayload,
			Cluster: server.ClusterOpts{
				Name: c.Name, Host: "127.0.0.1", Port: clusterPorts[i],
			},
			Routes: routes,
		}})
	}
	for i := range c.nodes {
		c.start(i)
	}
	tb.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(i)
		}
	})
	c.WaitMetaLeader()
	return c
}

func (c *NATSCluster) start(i int) {
	c.tb.Helper()
	nd := c.nodes[i]
	// Options are consumed by the server: each start gets a copy.
	opts := nd.opts.Clone()
	srv, err := server.NewServer(opts)
	if err != nil {
		c.tb.Fatalf("cluster: nats node %d: %v", i, err)
	}
	// The nodes run without logs; what went wrong at a start is kept and
	// shown if the node does not come up.
	var boot problems
	srv.SetLogger(&boot, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(60 * time.Second) {
		srv.Shutdown()
		c.tb.Fatalf("cluster: nats node %d not ready on port %d (cluster port %d): %s", i, nd.opts.Port, nd.opts.Cluster.Port, boot.String())
	}
	nd.srv = srv
}

// problems is a server.Logger keeping the first of a node's warnings and
// errors.
type problems struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (p *problems) keep(level, format string, v ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buf.Len() > 4096 { // a start's problems are in the first few
		return
	}
	fmt.Fprintf(&p.buf, "[%s] "+format+"; ", append([]any{level}, v...)...)
}

func (p *problems) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

func (p *problems) Noticef(string, ...any)         {}
func (p *problems) Debugf(string, ...any)          {}
func (p *problems) Tracef(string, ...any)          {}
func (p *problems) Warnf(format string, v ...any)  { p.keep("WRN", format, v...) }
func (p *problems) Errorf(format string, v ...any) { p.keep("ERR", format, v...) }
func (p *problems) Fatalf(format string, v ...any) { p.keep("FTL", format, v...) }

// WaitMetaLeader waits until every running node knows the cluster's meta
// leader (JetStream API requests fail before that).
func (c *NATSCluster) WaitMetaLeader() {
	c.tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, leader := true, false
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			if !nd.srv.JetStreamEnabled() || !nd.srv.JetStreamIsCurrent() {
				ok = false
			}
			leader = leader || nd.srv.JetStreamIsLeader()
		}
		if ok && leader {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("cluster: no JetStream meta leader within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StreamCurrent reports whether running node i holds stream and is
// caught up with its leader.
func (c *NATSCluster) StreamCurrent(i int, stream string) bool {
	nd := c.nodes[i]
	return nd.srv != nil && nd.srv.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, stream)
}

// URL is the comma-separated client URL list of every node, as nats.url
// takes it.
func (c *NATSCluster) URL() string {
	var urls []string
	for _, nd := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nd.opts.Port))
	}
	return strings.Join(urls, ",")
}

// NodeURL is node i's client URL.
func (c *NATSCluster) NodeURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].opts.Port)
}

// Len is the number of nodes.
func (c *NATSCluster) Len() int { return len(c.nodes) }

// Index returns the node named name (a server name as stream info's
// Cluster.Leader gives it), or -1.
func (c *NATSCluster) Index(name string) int {
	for i, nd := range c.nodes {
		if nd.opts.ServerName == name {
			return i
		}
	}
	return -1
}

// Kill stops node i at once: its clients lose their connection and the
// others lose a peer, as when the machine dies. Its files stay.
func (c *NATSCluster) Kill(i int) {
	nd := c.nodes[i]
	if nd.srv == nil {
		return
	}
	nd.srv.Shutdown()
	nd.srv.WaitForShutdown()
	nd.srv = nil
}

// Restart starts a killed node again on its ports with its files.
func (c *NATSCluster) Restart(i int) {
	c.tb.Helper()
	c.start(i)
}

// Running reports whether node i runs.
func (c *NATSCluster) Running(i int) bool { return c.nodes[i].srv != nil }

// StreamLeader returns the name of the node leading stream, "" while an
// election runs.
func StreamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, *jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return "", info, nil
	}
	return info.Cluster.Leader, info, nil
}
