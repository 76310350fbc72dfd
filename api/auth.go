package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"poi/internal/audit"
	"poi/internal/auth"
	"poi/internal/store"
	"poi/streams"
)

// Names of the browser session's cookie and CSRF header.
const (
	sessionCookie = "poi_session"
	csrfHeader    = "X-CSRF-Token"
	principalKey  = "poi.principal"
)

// principal is who a request acts for.
type principal struct {
	KeyID string
	Name  string
	Role  auth.Role
	// Via is how it authenticated: "key", "session", or "none" with
	// access control off.
	Via string
	// sessionHash and csrfHash are set when Via is "session".
	sessionHash, csrfHash string
}

func (p principal) actor() streams.AuditActor {
	return streams.AuditActor{KeyID: p.KeyID, Name: p.Name, Role: p.Role.String()}
}

// anonymous is every caller while access control is off.
var anonymous = principal{Name: "anonymous", Role: auth.Admin, Via: "none"}

// checkKey looks a presented key up and checks it; it returns the record
// and "" or the reason for refusing (the record is set when the key named
// one, so a revoked key's refusal names its owner).
func (s *Server) checkKey(ctx context.Context, secret string) (auth.Record, string, error) {
	id, err := auth.KeyID(secret)
	if err != nil {
		return auth.Record{}, auth.ReasonMalformed, nil
	}
	rec, err := s.deps.Store.APIKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return auth.Record{}, auth.ReasonUnknown, nil
	}
	if err != nil {
		return auth.Record{}, "", err
	}
	if why := auth.Check(rec, secret, time.Now()); why != "" {
		if why == auth.ReasonMismatch {
			// Someone holds a key id but not its secret: name nobody.
			return auth.Record{}, why, nil
		}
		return rec, why, nil
	}
	return rec, "", nil
}

// authenticate finds who a request acts for: a key in the Authorization or
// X-API-Key header, else a session cookie. Keys in URLs are never read.
func (s *Server) authenticate(c *gin.Context) (principal, string, error) {
	if !s.deps.Config.Auth.Enabled {
		return anonymous, "", nil
	}
	ctx := c.Request.Context()
	if secret, ok := auth.FromHeaders(c.GetHeader("Authorization"), c.GetHeader("X-API-Key")); ok {
		rec, why, err := s.checkKey(ctx, secret)
		p := principal{KeyID: rec.ID, Name: rec.Name, Role: rec.Role, Via: "key"}
		return p, why, err
	}
	token, err := c.Cookie(sessionCookie)
	if err != nil || token == "" {
		return principal{}, auth.ReasonMissing, nil
	}
	h := auth.Hash(token)
	sess, err := s.deps.Store.GetSession(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return principal{}, auth.ReasonSession, nil
	}
	if err != nil {
		return principal{}, "", err
	}
	rec, err := s.deps.Store.APIKey(ctx, sess.KeyID)
	if errors.Is(err, store.ErrNotFound) {
		return principal{}, auth.ReasonSession, nil
	}
	if err != nil {
		return principal{}, "", err
	}
	p := principal{KeyID: rec.ID, Name: rec.Name, Role: rec.Role, Via: "session", sessionHash: h, csrfHash: sess.CSRFHash}
	// A session lives no longer than its key: revoking the key ends it.
	switch rec.Status(time.Now()) {
	case auth.StatusRevoked:
		return p, auth.ReasonRevoked, nil
	case auth.StatusExpired:
		return p, auth.ReasonExpired, nil
	}
	return p, "", nil
}

// changesState: methods a cross-site page must not be able to trigger.
func changesState(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// guard enforces a route's role. Open routes pass everyone; the others
// answer 401 without valid credentials, 403 with too low a role or, for a
// change made with a session cookie, without the session's CSRF token.
// Every refusal is audited.
func (s *Server) guard(method, path string, need auth.Role) gin.HandlerFunc {
	if need == auth.Open {
		return func(c *gin.Context) { c.Next() }
	}
	return func(c *gin.Context) {
		p, why, err := s.authenticate(c)
		if err != nil {
			s.internal(c, "authenticate", err)
			return
		}
		if why != "" {
			s.deps.Metrics.Rejected.WithLabelValues("api", "unauthenticated").Inc()
			s.record(c, p.actor(), audit.AuthFailed, map[string]any{"reason": why, "method": method, "path": path})
			c.Header("WWW-Authenticate", `Bearer realm="poi"`)
			fail(c, http.StatusUnauthorized, "unauthorized",
				why+": send an API key as \"Authorization: Bearer KEY\" or \"X-API-Key: KEY\", or log in at POST /api/v1/session")
			return
		}
		if !p.Role.Allows(need) {
			s.deps.Metrics.Rejected.WithLabelValues("api", "forbidden").Inc()
			s.record(c, p.actor(), audit.AuthDenied, map[string]any{"reason": auth.ReasonRole, "need": need.String(), "method": method, "path": path})
			fail(c, http.StatusForbidden, "forbidden", fmt.Sprintf("%s %s needs the %s role; key %q is %s", method, path, need, p.Name, p.Role))
			return
		}
		if p.Via == "session" && changesState(c.Request.Method) && !auth.Matches(c.GetHeader(csrfHeader), p.csrfHash) {
			s.deps.Metrics.Rejected.WithLabelValues("api", "csrf").Inc()
			s.record(c, p.actor(), audit.AuthDenied, map[string]any{"reason": auth.ReasonCSRF, "method": method, "path": path})
			fail(c, http.StatusForbidden, "forbidden", "a change made with a session cookie needs the session's "+csrfHeader+" header")
			return
		}
		c.Set(principalKey, p)
		c.Next()
	}
}

// caller is the principal guard stored, or a valid caller on an open route
// (ok false when there is none).
func (s *Server) caller(c *gin.Context) (principal, bool) {
	if v, ok := c.Get(principalKey); ok {
		return v.(principal), true
	}
	p, why, err := s.authenticate(c)
	if err != nil || why != "" {
		return principal{}, false
	}
	c.Set(principalKey, p)
	return p, true
}

// audit records an action of the request's caller with its details (ids
// and counts; never photos, vectors, notes or keys). It waits until the
// record is stored and reports whether it was; a failure is logged and
// counted here, so a handler that cannot go on without its record (a
// search) checks the result and the others may ignore it.
func (s *Server) audit(c *gin.Context, action string, details map[string]any) bool {
	p, _ := s.caller(c)
	return s.record(c, p.actor(), action, details)
}

func (s *Server) record(c *gin.Context, who streams.AuditActor, action string, details map[string]any) bool {
	// The action happened even if the client hung up: record it anyway,
	// within the request timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), s.deps.Config.API.RequestTimeout)
	defer cancel()
	ev := streams.AuditEvent{Action: action, Actor: who, Remote: c.Request.RemoteAddr, RequestID: c.GetString(requestIDHeader), Details: details}
	if err := s.recorder.Record(ctx, ev); err != nil {
		s.deps.Metrics.Rejected.WithLabelValues("api", "audit_unavailable").Inc()
		s.deps.Log.Error("audit record not stored", "action", action, "actor", who.Name, "request_id", ev.RequestID, "details", details, "error", err)
		return false
	}
	return true
}
