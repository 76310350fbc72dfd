package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
)

type statusBody struct {
	Status        string `json:"status"`
	FaissVectors  int    `json:"faiss_vectors"`
	MQTTConnected bool   `json:"mqtt_connected"`
	// Down is a detail for callers with a key: open to probes, the status
	// holds the seed's fields only.
	Down []string `json:"down,omitempty"`
}

// status answers the seed's health check. Every dependency check is bounded
// by the dependency timeout, so a dead Redis makes the answer 503, never slow.
func (s *Server) status(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.deps.Config.API.DependencyTimeout)
	defer cancel()
	body := statusBody{Status: "running", FaissVectors: s.deps.VectorCount(), MQTTConnected: s.deps.MQTTConnected()}
	body.Down = s.down(ctx)
	code := http.StatusOK
	if len(body.Down) > 0 {
		body.Status = "degraded"
		code = http.StatusServiceUnavailable
	}
	if _, ok := s.caller(c); !ok {
		body.Down = nil
	}
	c.JSON(code, body)
}

// down names the dependencies that do not answer now.
func (s *Server) down(ctx context.Context) []string {
	var out []string
	if err := s.deps.Store.Ping(ctx); err != nil {
		out = append(out, "redis")
	}
	if s.deps.NATS == nil || s.deps.NATS.Status() != nats.CONNECTED {
		out = append(out, "nats")
	}
	return out
}
