// Package cluster starts the multi-node infrastructure a clustered
// deployment runs on, as real servers on loopback, for tests: a JetStream
// cluster of nats-server processes (each with its own client, cluster and
// monitoring port, routed to the others), and Redis with a replica watched by
// Sentinels (Debian's redis-server and redis-sentinel).
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/embedded"
	"poi/internal/testenv"
)

// NATSCluster is a JetStream cluster of nats-servers, each a process of its
// own (the test binary re-executed: see ServeNodeIfAsked), so that Kill is
// a SIGKILL: nothing is flushed, nothing is said to the peers. Nodes keep
// their ports and store directories across Kill and Restart, as a server
// that crashed and came back would.
type NATSCluster struct {
	tb    testing.TB
	Name  string
	nodes []*natsNode
}

type natsNode struct {
	spec nodeSpec
	cmd  *exec.Cmd
	done chan struct{}
	out  *capped
}

// nodeSpec is what a node process needs to start, passed in nodeEnv.
type nodeSpec struct {
	Name        string `json:"name"`
	Cluster     string `json:"cluster"`
	Port        int    `json:"port"`
	ClusterPort int    `json:"cluster_port"`
	HTTPPort    int    `json:"http_port"`
	Routes      []int  `json:"routes"`
	StoreDir    string `json:"store_dir"`
}

// nodeEnv holds a nodeSpec when the test binary runs as a nats-server node.
const nodeEnv = "POITEST_NATS_NODE"

func (s nodeSpec) options() *server.Options {
	var routes []*url.URL
	for _, p := range s.Routes {
		routes = append(routes, &url.URL{Scheme: "nats", Host: "127.0.0.1:" + strconv.Itoa(p)})
	}
	return &server.Options{
		ServerName: s.Name, Host: "127.0.0.1", Port: s.Port, HTTPHost: "127.0.0.1", HTTPPort: s.HTTPPort,
		JetStream: true, StoreDir: s.StoreDir, NoSigs: true, MaxPayload: embedded.MaxPayload,
		Cluster: server.ClusterOpts{Name: s.Cluster, Host: "127.0.0.1", Port: s.ClusterPort},
		Routes:  routes,
	}
}

// ServeNodeIfAsked makes the process a nats-server node, until it is
// killed, when StartNATS started it as one; otherwise it returns at once.
// A test package that starts a cluster calls it first in its TestMain.
func ServeNodeIfAsked() {
	raw := os.Getenv(nodeEnv)
	if raw == "" {
		return
	}
	var spec nodeSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", nodeEnv, err)
		os.Exit(2)
	}
	srv, err := server.NewServer(spec.options())
	if err != nil {
		fmt.Fprintf(os.Stderr, "nats node %s: %v\n", spec.Name, err)
		os.Exit(2)
	}
	srv.ConfigureLogger() // warnings and errors to stderr, which StartNATS keeps
	go srv.Start()
	srv.WaitForShutdown()
	os.Exit(0)
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
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{spec: nodeSpec{
			Name: fmt.Sprintf("n%d", i+1), Cluster: c.Name,
			Port: testenv.FreePort(tb), ClusterPort: clusterPorts[i], HTTPPort: testenv.FreePort(tb),
			Routes: clusterPorts, StoreDir: filepath.Join(tb.TempDir(), "jetstream"),
		}})
	}
	tb.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(i)
		}
	})
	for i := range c.nodes {
		c.start(i)
	}
	c.WaitMetaLeader()
	return c
}

func (c *NATSCluster) start(i int) {
	c.tb.Helper()
	nd := c.nodes[i]
	spec, err := json.Marshal(nd.spec)
	if err != nil {
		c.tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(spec))
	nd.out = &capped{}
	cmd.Stdout, cmd.Stderr = nd.out, nd.out
	if err := cmd.Start(); err != nil {
		c.tb.Fatalf("cluster: nats node %d: %v", i, err)
	}
	nd.cmd, nd.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(nd.done)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-nd.done:
			c.tb.Fatalf("cluster: nats node %d exited at start (does the package's TestMain call cluster.ServeNodeIfAsked?): %s", i, nd.out)
		default:
		}
		if nc, err := nats.Connect(c.NodeURL(i), nats.Timeout(time.Second)); err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("cluster: nats node %d not ready on port %d (cluster port %d) within 60s: %s", i, nd.spec.Port, nd.spec.ClusterPort, nd.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// capped keeps the first 16 KB written to it: a node's start-up problems.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *capped) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := 16<<10 - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *capped) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// WaitMetaLeader waits until every running node answers JetStream API
// requests, which it does only once it knows the cluster's meta leader.
func (c *NATSCluster) WaitMetaLeader() {
	c.tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := range c.nodes {
		if !c.Running(i) {
			continue
		}
		for !c.answersJetStream(i) {
			if time.Now().After(deadline) {
				c.tb.Fatalf("cluster: node %d knows no JetStream meta leader within 60s: %s", i, c.nodes[i].out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (c *NATSCluster) answersJetStream(i int) bool {
	nc, err := nats.Connect(c.NodeURL(i), nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err == nil
}

// StreamCurrent reports whether running node i holds stream up to the last
// sequence its leader reports (read from the node's own monitoring port).
func (c *NATSCluster) StreamCurrent(i int, stream string) bool {
	if !c.Running(i) {
		return false
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true", c.nodes[i].spec.HTTPPort))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name  string `json:"name"`
				State struct {
					LastSeq uint64 `json:"last_seq"`
				} `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if json.NewDecoder(resp.Body).Decode(&jsz) != nil {
		return false
	}
	nc, err := nats.Connect(c.URL(), nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, info, err := StreamLeader(ctx, js, stream)
	if err != nil {
		return false
	}
	for _, a := range jsz.Accounts {
		for _, st := range a.Streams {
			if st.Name == stream {
				return st.State.LastSeq == info.State.LastSeq
			}
		}
	}
	return false
}

// URL is the comma-separated client URL list of every node, as nats.url
// takes it.
func (c *NATSCluster) URL() string {
	var urls []string
	for i := range c.nodes {
		urls = append(urls, c.NodeURL(i))
	}
	return strings.Join(urls, ",")
}

// NodeURL is node i's client URL.
func (c *NATSCluster) NodeURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].spec.Port)
}

// Len is the number of nodes.
func (c *NATSCluster) Len() int { return len(c.nodes) }

// Index returns the node named name (a server name as stream info's
// Cluster.Leader gives it), or -1.
func (c *NATSCluster) Index(name string) int {
	for i, nd := range c.nodes {
		if nd.spec.Name == name {
			return i
		}
	}
	return -1
}

// Kill SIGKILLs node i: its clients lose their connection and the others a
// peer, with nothing flushed, as when the machine dies. Its files stay.
func (c *NATSCluster) Kill(i int) {
	nd := c.nodes[i]
	if !c.Running(i) {
		return
	}
	_ = nd.cmd.Process.Signal(syscall.SIGKILL)
	<-nd.done
}

// Restart starts a killed node again on its ports with its files.
func (c *NATSCluster) Restart(i int) {
	c.tb.Helper()
	c.start(i)
}

// Running reports whether node i runs.
func (c *NATSCluster) Running(i int) bool {
	nd := c.nodes[i]
	if nd.cmd == nil {
		return false
	}
	select {
	case <-nd.done:
		return false
	default:
		return true
	}
}

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
