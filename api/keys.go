package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"poi/internal/audit"
	"poi/internal/auth"
	"poi/internal/store"
	"poi/streams"
)

// keyBody is a key as listed: never its secret or its hash.
type keyBody struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	CreatedBy string `json:"created_by,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
	RevokedAt string `json:"revoked_at,omitempty"`
	// Key is the secret, in the answer to its creation only.
	Key string `json:"key,omitempty"`
}

func toKeyBody(r auth.Record, now time.Time) keyBody {
	return keyBody{ID: r.ID, Name: r.Name, Role: r.Role.String(), Status: r.Status(now), CreatedAt: rfc3339(r.CreatedAt),
		CreatedBy: r.CreatedBy, ExpiresAt: rfc3339(r.ExpiresAt), RevokedAt: rfc3339(r.RevokedAt)}
}

// readJSON decodes a small JSON body; anything else is a 400 or 415.
func readJSON(c *gin.Context, v any) bool {
	if mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); mt != "application/json" {
		fail(c, http.StatusUnsupportedMediaType, "want JSON", "Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(io.LimitReader(c.Request.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(c, http.StatusBadRequest, "bad JSON", err.Error())
		return false
	}
	return true
}

func (s *Server) listKeys(c *gin.Context) {
	recs, err := s.deps.Store.APIKeys(c.Request.Context())
	if err != nil {
		s.internal(c, "list keys", err)
		return
	}
	now := time.Now()
	out := make([]keyBody, 0, len(recs))
	for _, r := range recs {
		out = append(out, toKeyBody(r, now))
	}
	c.JSON(http.StatusOK, gin.H{"keys": out, "count": len(out)})
}

type createKeyRequest struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	ExpiresAt string `json:"expires_at"`
}

func (s *Server) createKey(c *gin.Context) {
	var req createKeyRequest
	if !readJSON(c, &req) {
		return
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		fail(c, http.StatusUnprocessableEntity, "invalid role", err.Error())
		return
	}
	var exp time.Time
	if req.ExpiresAt != "" {
		if exp, err = parseISO(req.ExpiresAt); err != nil {
			fail(c, http.StatusUnprocessableEntity, "invalid expires_at", fmt.Sprintf("expires_at: %q is not an ISO 8601 timestamp", req.ExpiresAt))
			return
		}
	}
	p, _ := s.caller(c)
	now := time.Now()
	rec, secret, err := auth.NewRecord(req.Name, role, exp, p.Name, now)
	if err != nil {
		fail(c, http.StatusUnprocessableEntity, "invalid key", err.Error())
		return
	}
	if err := s.deps.Store.CreateAPIKey(c.Request.Context(), rec); err != nil {
		if errors.Is(err, store.ErrNameTaken) {
			fail(c, http.StatusConflict, "name taken", fmt.Sprintf("a key named %q is in force: revoke it first or pick another name", req.Name))
			return
		}
		s.internal(c, "create key", err)
		return
	}
	s.deps.Log.Info("api key created", "key_id", rec.ID, "name", rec.Name, "role", rec.Role.String(), "by", p.Name)
	s.audit(c, audit.KeyCreate, map[string]any{"key_id": rec.ID, "name": rec.Name, "role": rec.Role.String(), "expires_at": rfc3339(rec.ExpiresAt)})
	body := toKeyBody(rec, now)
	body.Key = secret
	c.JSON(http.StatusCreated, body)
}

func (s *Server) revokeKey(c *gin.Context) {
	ctx := c.Request.Context()
	which := c.Param("key")
	id, err := s.deps.Store.ResolveAPIKey(ctx, which)
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "key not found", fmt.Sprintf("no key named or with id %q", which))
		return
	}
	if err != nil {
		s.internal(c, "revoke key", err)
		return
	}
	changed, err := s.deps.Store.RevokeAPIKey(ctx, id, time.Now())
	if err != nil {
		s.internal(c, "revoke key", err)
		return
	}
	rec, err := s.deps.Store.APIKey(ctx, id)
	if err != nil {
		s.internal(c, "revoke key", err)
		return
	}
	if changed {
		s.deps.Log.Info("api key revoked", "key_id", rec.ID, "name", rec.Name)
		s.audit(c, audit.KeyRevoke, map[string]any{"key_id": rec.ID, "name": rec.Name, "role": rec.Role.String()})
	}
	c.JSON(http.StatusOK, toKeyBody(rec, time.Now()))
}

type loginRequest struct {
	Key string `json:"key"`
}

// login exchanges a key for a session cookie and a CSRF token: a browser
// console keeps no key in script-readable storage, and a cross-site page
// can neither read the token nor send the Strict cookie.
func (s *Server) login(c *gin.Context) {
	var req loginRequest
	if !readJSON(c, &req) {
		return
	}
	ctx := c.Request.Context()
	rec, why, err := s.checkKey(ctx, strings.TrimSpace(req.Key))
	if err != nil {
		s.internal(c, "login", err)
		return
	}
	if req.Key == "" {
		why = auth.ReasonMissing
	}
	if why != "" {
		s.deps.Metrics.Rejected.WithLabelValues("api", "unauthenticated").Inc()
		s.record(c, principal{KeyID: rec.ID, Name: rec.Name, Role: rec.Role}.actor(), audit.AuthFailed,
			map[string]any{"reason": why, "method": c.Request.Method, "path": c.FullPath()})
		fail(c, http.StatusUnauthorized, "unauthorized", why)
		return
	}
	token, err := auth.NewToken()
	if err != nil {
		s.internal(c, "login", err)
		return
	}
	csrf, err := auth.NewToken()
	if err != nil {
		s.internal(c, "login", err)
		return
	}
	ttl := s.deps.Config.Auth.SessionTTL
	if !rec.ExpiresAt.IsZero() {
		ttl = min(ttl, time.Until(rec.ExpiresAt))
	}
	if err := s.deps.Store.CreateSession(ctx, auth.Hash(token), store.Session{KeyID: rec.ID, CSRFHash: auth.Hash(csrf)}, ttl); err != nil {
		s.internal(c, "login", err)
		return
	}
	p := principal{KeyID: rec.ID, Name: rec.Name, Role: rec.Role, Via: "session"}
	c.Set(principalKey, p)
	s.audit(c, audit.SessionLogin, nil)
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", MaxAge: int(ttl.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Request.TLS != nil})
	c.JSON(http.StatusOK, gin.H{"csrf_token": csrf, "key_id": rec.ID, "key_name": rec.Name, "role": rec.Role.String(),
		"expires_at": rfc3339(time.Now().Add(ttl))})
}

func (s *Server) whoami(c *gin.Context) {
	p, _ := s.caller(c)
	c.JSON(http.StatusOK, gin.H{"key_id": p.KeyID, "key_name": p.Name, "role": p.Role.String(), "via": p.Via})
}

func (s *Server) logout(c *gin.Context) {
	p, _ := s.caller(c)
	if p.Via == "session" {
		if err := s.deps.Store.DeleteSession(c.Request.Context(), p.sessionHash); err != nil {
			s.internal(c, "logout", err)
			return
		}
		s.audit(c, audit.SessionLogout, nil)
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Request.TLS != nil})
	c.JSON(http.StatusOK, gin.H{"status": "logged out"})
}

// Audit page sizes.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

func (s *Server) readAudit(c *gin.Context) {
	var q audit.Query
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if v := strings.TrimSpace(c.Query(f.name)); v != "" {
			t, err := parseISO(v)
			if err != nil {
				fail(c, http.StatusUnprocessableEntity, "invalid "+f.name, fmt.Sprintf("%s: %q is not an ISO 8601 timestamp", f.name, v))
				return
			}
			*f.dst = t
		}
	}
	q.Limit = defaultAuditLimit
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			fail(c, http.StatusUnprocessableEntity, "invalid limit", fmt.Sprintf("limit: %q, want an integer in 1..%d", v, maxAuditLimit))
			return
		}
		q.Limit = n
	}
	q.Actor, q.Action = c.Query("actor"), c.Query("action")
	res, err := audit.Read(c.Request.Context(), s.deps.JS, q)
	if err != nil {
		s.internal(c, "read audit", err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"records": res.Records, "count": len(res.Records), "more": res.More})
}

// AdminKeyFile is where the bootstrap writes the first admin key.
func AdminKeyFile(dataDir string) string { return filepath.Join(dataDir, "admin.key") }

// Bootstrap creates the first admin key when no key exists at all and
// writes it to {data_dir}/admin.key (mode 0600); the log names the file,
// never the key. With keys in Redis it does nothing, so a restart makes no
// second key.
func (s *Server) Bootstrap(ctx context.Context) error {
	if !s.deps.Config.Auth.Enabled {
		return nil
	}
	path := AdminKeyFile(s.deps.Config.DataDir)
	rec, secret, err := auth.NewRecord("admin", auth.Admin, time.Time{}, "bootstrap", time.Now())
	if err != nil {
		return fmt.Errorf("bootstrap admin key: %w", err)
	}
	// The file is written before the key exists, so a data dir that cannot
	// take it fails start-up instead of leaving a key nobody holds.
	tmp, err := os.CreateTemp(s.deps.Config.DataDir, ".admin.key-*")
	if err != nil {
		return fmt.Errorf("bootstrap admin key: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := writeSecret(tmp, secret); err != nil {
		return fmt.Errorf("bootstrap admin key %s: %w", path, err)
	}
	err = s.deps.Store.CreateFirstAPIKey(ctx, rec)
	if errors.Is(err, store.ErrKeysExist) {
		s.deps.Log.Info("api keys exist: no bootstrap key created", "path", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("bootstrap admin key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("bootstrap admin key %s (created as %s; revoke it with `poi keys revoke %s` and restart): %w", path, rec.ID, rec.ID, err)
	}
	s.deps.Log.Warn("created the first admin key: read it from the file, then keep it elsewhere", "path", path, "key_id", rec.ID)
	ctx, cancel := context.WithTimeout(ctx, s.deps.Config.API.RequestTimeout)
	defer cancel()
	if err := s.recorder.Record(ctx, streams.AuditEvent{Action: audit.KeyCreate, Actor: streams.AuditActor{Name: "bootstrap", Role: auth.Admin.String()},
		Remote: "local", Details: map[string]any{"key_id": rec.ID, "name": rec.Name, "role": rec.Role.String(), "path": path}}); err != nil {
		s.deps.Log.Error("audit record not stored", "action", audit.KeyCreate, "key_id", rec.ID, "error", err)
	}
	return nil
}

func writeSecret(f *os.File, secret string) error {
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// RetryBootstrap is Bootstrap retried until Redis answers; then it waits
// for ctx, as an actor of the process must.
func (s *Server) RetryBootstrap(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.Bootstrap(ctx); err != nil {
			s.deps.Log.Warn("auth bootstrap", "error", err)
			continue
		}
		<-ctx.Done()
		return nil
	}
}
