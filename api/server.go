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

	"poi/internal/audit"
	"poi/internal/auth"
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
	limits     *limiter
	recorder   *audit.Recorder
	// closing is closed when Shutdown starts, ending the long-lived alert
	// streams that would otherwise hold it up.
	closing chan struct{}
}

// route is one line of the route table: what it answers, the least role
// that may call it (auth.Open: anyone, no key), the rate-limit bucket it
// draws from ("" for none) and its handler.
type route struct {
	method, path string
	role         auth.Role
	limit        string
	handle       gin.HandlerFunc
}

// Rate-limit buckets of the costly routes.
const (
	limitEnroll = "enroll"
	limitSearch = "search"
)

// routes is the API's one route table: every route with the role it needs.
// A route added anywhere else would escape access control, so add it here;
// the API tests walk this table and fail for a route they do not know.
func (s *Server) routes() []route {
	const get, post, del, patch = http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPatch
	return []route{
		// The operator console: its files are open, every call it makes is not.
		{get, "/", auth.Open, "", s.consoleIndex},
		{get, "/console/:file", auth.Open, "", s.consoleFile},
		{get, "/api/v1/status", auth.Open, "", s.status},
		{get, "/api/v1/openapi.json", auth.Open, "", s.openapi},
		{post, "/api/v1/poi", auth.Operator, limitEnroll, s.createPOI},
		{get, "/api/v1/poi", auth.Viewer, "", s.listPOIs},
		{get, "/api/v1/poi/:poi_id", auth.Viewer, "", s.getPOI},
		{del, "/api/v1/poi/:poi_id", auth.Admin, "", s.deletePOI},
		{patch, "/api/v1/poi/:poi_id", auth.Operator, "", s.updatePOI},
		{post, "/api/v1/poi/:poi_id/images", auth.Operator, limitEnroll, s.addImages},
		{del, "/api/v1/poi/:poi_id/images/:embedding_id", auth.Operator, "", s.deleteImage},
		{get, "/api/v1/poi/:poi_id/photo", auth.Viewer, "", s.poiPhoto},
		{get, "/api/v1/poi/:poi_id/photos/:embedding_id", auth.Viewer, "", s.poiPhoto},
		{get, "/api/v1/poi/:poi_id/activity", auth.Viewer, "", s.poiActivity},
		{post, "/api/v1/search", auth.Operator, limitSearch, s.search},
		{get, "/api/v1/frames/:encoded_key", auth.Viewer, "", s.frame},
		{get, "/api/v1/thumbnail/:object_id", auth.Viewer, "", s.thumbnail},
		{get, "/api/v1/cameras", auth.Viewer, "", s.listCameras},
		{get, "/api/v1/cameras/:camera_id", auth.Viewer, "", s.getCamera},
		{get, "/api/v1/cameras/:camera_id/live", auth.Viewer, "", s.cameraLive},
		{get, "/api/v1/alerts", auth.Viewer, "", s.listAlerts},
		{del, "/api/v1/alerts", auth.Operator, "", s.deleteAlerts},
		{patch, "/api/v1/alerts/:alert_id", auth.Operator, "", s.reviewAlert},
		{get, "/api/v1/stats/reviews", auth.Viewer, "", s.reviewStats},
		{get, "/api/v1/alerts/stream", auth.Viewer, "", s.alertStream},
		// The session exchange authenticates by the key in its body.
		{post, "/api/v1/session", auth.Open, "", s.login},
		{get, "/api/v1/session", auth.Viewer, "", s.whoami},
		{del, "/api/v1/session", auth.Viewer, "", s.logout},
		{get, "/api/v1/keys", auth.Admin, "", s.listKeys},
		{post, "/api/v1/keys", auth.Admin, "", s.createKey},
		{del, "/api/v1/keys/:key", auth.Admin, "", s.revokeKey},
		{get, "/api/v1/audit", auth.Admin, "", s.readAudit},
		// Open without a key only on metrics_addr (internal/node).
		{get, "/metrics", auth.Viewer, "", gin.WrapH(s.deps.Metrics.Handler())},
	}
}

// RouteRole is a route and the role it needs, for documentation and tests.
type RouteRole struct {
	Method, Path string
	Role         auth.Role
	Limited      bool
}

// Routes lists the route table.
func (s *Server) Routes() []RouteRole {
	var out []RouteRole
	for _, rt := range s.routes() {
		out = append(out, RouteRole{Method: rt.method, Path: rt.path, Role: rt.role, Limited: rt.limit != ""})
	}
	return out
}

// New builds the router. Listen and Serve start it.
func New(d Deps) *Server {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	s := &Server{deps: d, scenescape: scenescape.New(d.Config.SceneScape),
		limits: newLimiter(d.Config.API.RateLimit), recorder: audit.NewRecorder(d.JS), closing: make(chan struct{})}
	r.Use(requestID(), accessLog(d.Log), recoverJSON(d.Log), securityHeaders(), cors(d.Config.API.CORSOrigins))
	r.NoRoute(func(c *gin.Context) { fail(c, http.StatusNotFound, "not found", "no route for "+c.Request.URL.Path) })
	r.NoMethod(func(c *gin.Context) {
		fail(c, http.StatusMethodNotAllowed, "method not allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	for _, rt := range s.routes() {
		chain := []gin.HandlerFunc{s.guard(rt.method, rt.path, rt.role)}
		if rt.limit != "" {
			chain = append(chain, s.rateLimit(rt.limit))
		}
		r.Handle(rt.method, rt.path, append(chain, rt.handle)...)
	}
	s.http = &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 10 * time.Second,
		// Uploads of 5 x 10 MB on a slow link need time; the handlers bound
		// their own work with the request timeout.
		ReadTimeout: d.Config.API.RequestTimeout,
		IdleTimeout: 2 * time.Minute,
	}
	s.http.RegisterOnShutdown(func() { close(s.closing) })
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
