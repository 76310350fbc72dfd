// Package api is the REST API of the seed reference under /api/v1: thin gin
// handlers that validate input, call internal services and map results to
// the seed's JSON shapes.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/config"
	"poi/internal/erasure"
	"poi/internal/metrics"
	"poi/internal/outbox"
	"poi/internal/replica"
	"poi/internal/scenescape"
	"poi/internal/store"
	"poi/workers/embed"
)

// Deps are what the handlers read from and call into.
type Deps struct {
	Config config.Config
	Store  *store.Store
	NATS   *nats.Conn
	JS     jetstream.JetStream
	// Embed reaches the embedding service (in this process or another).
	Embed *embed.Client
	// POI and Detections are this process's index replicas.
	POI        *replica.POI
	Detections *replica.Detections
	// Outbox publishes enrolments; Erase runs the purge of DELETE /poi.
	Outbox *outbox.Outbox
	Erase  *erasure.Purger
	// MQTTConnected reports the live state of this process's MQTT client.
	MQTTConnected func() bool
	// VectorCount is the number of vectors in every FAISS index this process
	// serves from.
	VectorCount func() int
	Metrics     *metrics.Metrics
	Log         *slog.Logger
}

// Server is the HTTP server of the API.
type Server struct {
	deps       Deps
	scenescape *scenescape.Client
	http       *http.Server
	ln         net.Listener
}

// New builds the router. Listen and Serve start it.
func New(d Deps) *Server {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	s := &Server{deps: d, scenescape: scenescape.New(d.Config.SceneScape)}
	r.Use(requestID(), accessLog(d.Log), recoverJSON(d.Log))
	r.NoRoute(func(c *gin.Context) { fail(c, http.StatusNotFound, "not found", "no route for "+c.Request.URL.Path) })
	r.NoMethod(func(c *gin.Context) {
		fail(c, http.StatusMethodNotAllowed, "method not allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	v1 := r.Group("/api/v1")
	v1.GET("/status", s.status)
	v1.POST("/poi", s.createPOI)
	v1.GET("/poi", s.listPOIs)
	v1.GET("/poi/:poi_id", s.getPOI)
	v1.DELETE("/poi/:poi_id", s.deletePOI)
	v1.POST("/search", s.search)
	v1.GET("/frames/:encoded_key", s.frame)
	v1.GET("/thumbnail/:object_id", s.thumbnail)
	v1.GET("/cameras", s.listCameras)
	v1.GET("/cameras/:camera_id", s.getCamera)
	v1.GET("/alerts", s.listAlerts)
	v1.DELETE("/alerts", s.deleteAlerts)
	v1.GET("/openapi.json", s.openapi)
	r.GET("/metrics", gin.WrapH(d.Metrics.Handler()))
	s.http = &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 10 * time.Second,
		// Uploads of 5 x 10 MB on a slow link need time; the handlers bound
		// their own work with the request timeout.
		ReadTimeout: d.Config.API.RequestTimeout,
		IdleTimeout: 2 * time.Minute,
	}
	return s
}

// Handler exposes the router (tests use it with httptest).
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Listen binds the configured address so that a port in use fails start-up.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.deps.Config.API.Addr)
	if err != nil {
		return fmt.Errorf("api listen %s: %w", s.deps.Config.API.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (after Listen).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	s.deps.Log.Info("api listening", "addr", s.Addr())
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
}

// errorBody is the JSON of every failure.
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

func fail(c *gin.Context, code int, msg, detail string) {
	c.AbortWithStatusJSON(code, errorBody{Error: msg, Detail: detail})
}
