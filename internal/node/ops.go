package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/nats-io/nats.go"
)

// serveOps serves metrics_addr: a /metrics for Prometheus and a /healthz
// for orchestrators (200 while NATS and Redis answer, else 503), both open,
// so metrics_addr belongs on a network only the operators reach. On the API
// address /metrics needs a key.
func (n *Node) serveOps() error {
	ln, err := net.Listen("tcp", n.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics_addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), n.cfg.API.DependencyTimeout)
		defer cancel()
		body := map[string]any{"status": "running"}
		var down []string
		if err := n.store.Ping(ctx); err != nil {
			down = append(down, "redis")
		}
		if n.nc.Status() != nats.CONNECTED {
			down = append(down, "nats")
		}
		code := http.StatusOK
		if len(down) > 0 {
			body["status"], body["down"], code = "degraded", down, http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.log.Info("metrics and health listening", "addr", ln.Addr().String())
	n.actors = append(n.actors, actor{"ops", func(ctx context.Context) error {
		return serveUntil(ctx, srv, ln)
	}})
	return nil
}

// serveProfiles serves Go's profiles on pprof_addr, on a mux of its own so
// that they are never reachable through the API's or the metrics' port.
func (n *Node) serveProfiles() error {
	ln, err := net.Listen("tcp", n.cfg.PprofAddr)
	if err != nil {
		return fmt.Errorf("pprof_addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	// A CPU profile runs for its ?seconds= (30 by default): no write timeout.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.log.Info("profiles listening", "addr", ln.Addr().String())
	n.actors = append(n.actors, actor{"pprof", func(ctx context.Context) error {
		return serveUntil(ctx, srv, ln)
	}})
	return nil
}

// serveUntil serves srv on ln until ctx ends.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
