package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	}})
	return nil
}
