package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"poi/api"
	"poi/internal/auth"
	"poi/internal/stacktest"
	"poi/internal/testenv"
	"poi/streams"
)

// logBuffer collects a stack's log; the stack writes from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// reply is an answer read whole.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %s", r.code, r.body)
	}
	return m
}

// call sends one request with key (if any) as a bearer token.
func call(t *testing.T, method, url, key, contentType string, body []byte, more ...func(*http.Request)) reply {
	t.Helper()
	req := stacktest.Request(t, method, url, key, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, f := range more {
		f(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// emptyForm is a multipart form with no fields: enough to get past access
// control to the handler's own validation.
func emptyForm() (string, []byte) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

// createKey makes a key through the API as admin and returns it.
func createKey(t *testing.T, s *stacktest.Stack, admin, name, role string) string {
	t.Helper()
	r := call(t, "POST", s.URL+"/api/v1/keys", admin, "application/json", jsonBody(map[string]string{"name": name, "role": role}))
	if r.code != 201 {
		t.Fatalf("create key %s: %d %s", name, r.code, r.body)
	}
	m := r.json(t)
	key, _ := m["key"].(string)
	if _, err := auth.KeyID(key); err != nil || m["name"] != name || m["role"] != role || m["status"] != "active" {
		t.Fatalf("created key %v", m)
	}
	return key
}

// credentials are the callers every route is tried with.
type credentials struct {
	viewer, operator, admin, revoked, expired string
}

func makeCredentials(t *testing.T, s *stacktest.Stack) credentials {
	t.Helper()
	c := credentials{admin: s.AdminKey}
	c.viewer = createKey(t, s, s.AdminKey, "kiosk", "viewer")
	c.operator = createKey(t, s, s.AdminKey, "desk", "operator")
	c.revoked = createKey(t, s, s.AdminKey, "gone", "admin")
	if r := call(t, "DELETE", s.URL+"/api/v1/keys/gone", s.AdminKey, "", nil); r.code != 200 || r.json(t)["status"] != "revoked" {
		t.Fatalf("revoke: %d %s", r.code, r.body)
	}
	// An expired key is written straight to Redis: the API refuses to
	// create a key that expires in the past, and a test must not wait.
	rec, secret, err := auth.NewRecord("old", auth.Admin, time.Now().Add(time.Hour), "test", time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rec.ExpiresAt = time.Now().Add(-time.Minute)
	if err := s.Store.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	c.expired = secret
	return c
}

// routeCase is how the test calls one route and what a caller allowed to
// call it gets.
type routeCase struct {
	need   auth.Role
	method string
	path   string // with the route's parameters filled in
	ctype  string
	body   func() []byte
	want   int
}

// routeCases has one entry per line of the route table. A route added
// without an entry here fails TestEveryRouteAnswersEveryCaller.
func routeCases(viewerKey string) map[string]routeCase {
	form, body := emptyForm()
	none := func() []byte { return nil }
	n := 0
	return map[string]routeCase{
		"GET /":                                        {auth.Open, "GET", "/", "", none, 200},
		"GET /console/:file":                           {auth.Open, "GET", "/console/app.js", "", none, 200},
		"GET /api/v1/status":                           {auth.Open, "GET", "/api/v1/status", "", none, 200},
		"GET /api/v1/openapi.json":                     {auth.Open, "GET", "/api/v1/openapi.json", "", none, 200},
		"POST /api/v1/poi":                             {auth.Operator, "POST", "/api/v1/poi", form, func() []byte { return body }, 422},
		"GET /api/v1/poi":                              {auth.Viewer, "GET", "/api/v1/poi", "", none, 200},
		"GET /api/v1/poi/:poi_id":                      {auth.Viewer, "GET", "/api/v1/poi/poi-00000000", "", none, 404},
		"DELETE /api/v1/poi/:poi_id":                   {auth.Admin, "DELETE", "/api/v1/poi/poi-00000000", "", none, 404},
		"GET /api/v1/poi/:poi_id/photo":                {auth.Viewer, "GET", "/api/v1/poi/poi-00000000/photo", "", none, 404},
		"GET /api/v1/poi/:poi_id/photos/:embedding_id": {auth.Viewer, "GET", "/api/v1/poi/poi-00000000/photos/emb-00000000-1", "", none, 404},
		"GET /api/v1/poi/:poi_id/activity":             {auth.Viewer, "GET", "/api/v1/poi/poi-00000000/activity", "", none, 404},
		"POST /api/v1/search":                          {auth.Operator, "POST", "/api/v1/search", form, func() []byte { return body }, 422},
		"GET /api/v1/frames/:encoded_key":              {auth.Viewer, "GET", "/api/v1/frames/eA", "", none, 404},
		"GET /api/v1/thumbnail/:object_id":             {auth.Viewer, "GET", "/api/v1/thumbnail/cam:x:1", "", none, 404},
		"GET /api/v1/cameras":                          {auth.Viewer, "GET", "/api/v1/cameras", "", none, 200},
		"GET /api/v1/cameras/:camera_id":               {auth.Viewer, "GET", "/api/v1/cameras/nope", "", none, 404},
		"GET /api/v1/cameras/:camera_id/live":          {auth.Viewer, "GET", "/api/v1/cameras/nope/live", "", none, 404},
		"GET /api/v1/alerts":                           {auth.Viewer, "GET", "/api/v1/alerts", "", none, 200},
		"DELETE /api/v1/alerts":                        {auth.Operator, "DELETE", "/api/v1/alerts", "", none, 200},
		// An endless stream cannot be read to its end: a bad resume point is
		// answered by the handler itself, past access control.
		"GET /api/v1/alerts/stream": {auth.Viewer, "GET", "/api/v1/alerts/stream?last_event_id=x", "", none, 422},
		"POST /api/v1/session":      {auth.Open, "POST", "/api/v1/session", "application/json", func() []byte { return jsonBody(map[string]string{"key": viewerKey}) }, 200},
		"GET /api/v1/session":       {auth.Viewer, "GET", "/api/v1/session", "", none, 200},
		"DELETE /api/v1/session":    {auth.Viewer, "DELETE", "/api/v1/session", "", none, 200},
		"GET /api/v1/keys":          {auth.Admin, "GET", "/api/v1/keys", "", none, 200},
		"PATCH /api/v1/poi/:poi_id": {auth.Operator, "PATCH", "/api/v1/poi/poi-00000000", "application/json", func() []byte {
			return jsonBody(map[string]string{"notes": "x"})
		}, 404},
		"POST /api/v1/poi/:poi_id/images":                 {auth.Operator, "POST", "/api/v1/poi/poi-00000000/images", form, func() []byte { return body }, 422},
		"DELETE /api/v1/poi/:poi_id/images/:embedding_id": {auth.Operator, "DELETE", "/api/v1/poi/poi-00000000/images/emb-00000000-1", "", none, 404},
		"PATCH /api/v1/alerts/:alert_id": {auth.Operator, "PATCH", "/api/v1/alerts/alert-20260101-000000-poi-00000000-000000", "application/json", func() []byte {
			return jsonBody(map[string]string{"status": "Dismissed"})
		}, 404},
		"GET /api/v1/stats/reviews": {auth.Viewer, "GET", "/api/v1/stats/reviews", "", none, 200},
		"POST /api/v1/keys": {auth.Admin, "POST", "/api/v1/keys", "application/json", func() []byte {
			n++
			return jsonBody(map[string]string{"name": "k" + strconv.Itoa(n), "role": "viewer"})
		}, 201},
		"DELETE /api/v1/keys/:key": {auth.Admin, "DELETE", "/api/v1/keys/no-such-key", "", none, 404},
		"GET /api/v1/audit":        {auth.Admin, "GET", "/api/v1/audit", "", none, 200},
		"GET /metrics":             {auth.Viewer, "GET", "/metrics", "", none, 200},
	}
}

// TestEveryRouteAnswersEveryCaller calls every route of the route table
// with no key, each role's key, a revoked and an expired key, over real
// HTTP; then checks that no key reached the log.
func TestEveryRouteAnswersEveryCaller(t *testing.T) {
	var logs logBuffer
	s := stacktest.Start(t, stacktest.Options{Auth: true, Log: &logs})
	creds := makeCredentials(t, s)
	cases := routeCases(creds.viewer)

	table := api.New(api.Deps{Config: s.Config, Metrics: s.Node.Metrics()}).Routes()
	seen := map[string]bool{}
	for _, rt := range table {
		name := rt.Method + " " + rt.Path
		seen[name] = true
		tc, ok := cases[name]
		if !ok {
			t.Errorf("route %s has no case in routeCases: say how to call it and what each role gets", name)
			continue
		}
		if tc.need != rt.Role {
			t.Errorf("%s: the route table asks for %s, the test expects %s", name, rt.Role, tc.need)
		}
		callers := []struct {
			who  string
			key  string
			role auth.Role
			dead bool
		}{
			{"no key", "", auth.Open, true},
			{"viewer", creds.viewer, auth.Viewer, false},
			{"operator", creds.operator, auth.Operator, false},
			{"admin", creds.admin, auth.Admin, false},
			{"revoked key", creds.revoked, auth.Admin, true},
			{"expired key", creds.expired, auth.Admin, true},
		}
		for _, cl := range callers {
			r := call(t, tc.method, s.URL+tc.path, cl.key, tc.ctype, tc.body())
			what := fmt.Sprintf("%s as %s", name, cl.who)
			switch {
			case tc.need == auth.Open:
				if r.code != tc.want {
					t.Errorf("%s: %d, want %d (%s)", what, r.code, tc.want, r.body)
				}
			case cl.dead:
				if r.code != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: %d (WWW-Authenticate %q), want 401 (%s)", what, r.code, r.header.Get("WWW-Authenticate"), r.body)
				}
				wantError(t, what, r.code, r.json(t), 401, "")
			case !cl.role.Allows(tc.need):
				if r.code != 403 {
					t.Errorf("%s: %d, want 403 (%s)", what, r.code, r.body)
				}
				wantError(t, what, r.code, r.json(t), 403, tc.need.String())
			default:
				if r.code != tc.want {
					t.Errorf("%s: %d, want %d (%s)", what, r.code, tc.want, r.body)
				}
			}
		}
	}
	for name := range cases {
		if !seen[name] {
			t.Errorf("routeCases has %s, which the route table does not serve", name)
		}
	}
	// The X-API-Key header is a key as good as the bearer one.
	if r := call(t, "GET", s.URL+"/api/v1/poi", "", "", nil, func(r *http.Request) { r.Header.Set("X-API-Key", creds.viewer) }); r.code != 200 {
		t.Errorf("X-API-Key: %d %s", r.code, r.body)
	}
	// Without a key the status holds the seed's fields only.
	if r := call(t, "GET", s.URL+"/api/v1/status", "", "", nil); strings.Join(keysOf(r.json(t)), ",") != "faiss_vectors,mqtt_connected,status" {
		t.Errorf("open status %s", r.body)
	}

	log := logs.String()
	if !strings.Contains(log, api.AdminKeyFile(s.Config.DataDir)) {
		t.Errorf("the log does not name the admin key file")
	}
	for name, key := range map[string]string{"viewer": creds.viewer, "operator": creds.operator, "admin": creds.admin, "revoked": creds.revoked, "expired": creds.expired} {
		id, _ := auth.KeyID(key)
		secret := strings.TrimPrefix(key, "poi_"+id+"_")
		if strings.Contains(log, secret) {
			t.Errorf("the %s key is in the log", name)
		}
	}
	if !strings.Contains(log, "http request") {
		t.Fatal("the captured log holds no request: it is not the stack's log")
	}
}

func TestBootstrapCreatesOneAdminKeyAcrossRestarts(t *testing.T) {
	redis := testenv.StartRedis(t)
	dir := t.TempDir()
	var logs logBuffer
	first := stacktest.Start(t, stacktest.Options{Auth: true, Redis: redis, DataDir: dir, Log: &logs})
	path := api.AdminKeyFile(dir)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	keys := func(s *stacktest.Stack) []any {
		r := call(t, "GET", s.URL+"/api/v1/keys", s.AdminKey, "", nil)
		if r.code != 200 {
			t.Fatalf("keys with the bootstrap key: %d %s", r.code, r.body)
		}
		return r.json(t)["keys"].([]any)
	}
	ks := keys(first)
	if len(ks) != 1 || ks[0].(map[string]any)["role"] != "admin" || ks[0].(map[string]any)["created_by"] != "bootstrap" {
		t.Fatalf("keys after the first start: %v", ks)
	}
	if strings.Contains(logs.String(), strings.Split(first.AdminKey, "_")[2]) || !strings.Contains(logs.String(), path) {
		t.Fatalf("the log must name %s and never hold the key", path)
	}
	first.Stop()

	second := stacktest.Start(t, stacktest.Options{Auth: true, Redis: redis, DataDir: dir, Log: io.Discard})
	if second.AdminKey != first.AdminKey {
		t.Fatal("the restart replaced admin.key")
	}
	if ks := keys(second); len(ks) != 1 {
		t.Fatalf("%d keys after a restart, want the one bootstrap key: %v", len(ks), ks)
	}
}

// auditRecords reads the whole POI_AUDIT stream.
func auditRecords(t *testing.T, s *stacktest.Stack) []streams.AuditEvent {
	t.Helper()
	ctx := context.Background()
	st, err := s.JS.Stream(ctx, streams.Audit)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []streams.AuditEvent
	for uint64(len(out)) < info.State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var ev streams.AuditEvent
		if err := streams.DecodeMsg(m.Headers(), m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func TestAuditTrailHoldsOneRecordPerAction(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Auth: true, Env: []string{"POI_SEARCH_REQUIRE_REASON=true"}})
	op := createKey(t, s, s.AdminKey, "investigator", "operator")
	ctype, body := multipartOf(t, []file{photo(t, "franck_01829.jpg")}, map[string]string{"severity": "high"})
	r := call(t, "POST", s.URL+"/api/v1/poi", op, ctype, body)
	if r.code != 201 {
		t.Fatalf("enroll: %d %s", r.code, r.body)
	}
	poi := r.json(t)["poi_id"].(string)
	// Stage 1 needs no reason; stage 2 does.
	ctype, body = multipartOf(t, []file{{"image", "q.jpg", testenv.ReadPhoto(t, "franck_04117.jpg")}}, nil)
	if r := call(t, "POST", s.URL+"/api/v1/search", op, ctype, body); r.code != 200 || r.json(t)["matched_poi_id"] != poi {
		t.Fatalf("stage 1 search: %d %s", r.code, r.body)
	}
	ctype, body = multipartOf(t, []file{{"image", "q.jpg", testenv.ReadPhoto(t, "cage.jpg")}}, map[string]string{"start_time": "2026-11-01T00:00:00Z", "end_time": "2026-11-02T00:00:00Z"})
	r = call(t, "POST", s.URL+"/api/v1/search", op, ctype, body)
	wantError(t, "stage 2 without a reason", r.code, r.json(t), 422, "reason")
	ctype, body = multipartOf(t, []file{{"image", "q.jpg", testenv.ReadPhoto(t, "cage.jpg")}}, map[string]string{"reason": "case 2026-042", "start_time": "2026-11-01T00:00:00Z", "end_time": "2026-11-02T00:00:00Z"})
	if r := call(t, "POST", s.URL+"/api/v1/search", op, ctype, body); r.code != 200 {
		t.Fatalf("stage 2 with a reason: %d %s", r.code, r.body)
	}
	if r := call(t, "DELETE", s.URL+"/api/v1/alerts", op, "", nil); r.code != 200 {
		t.Fatalf("clear alerts: %d", r.code)
	}
	if r := call(t, "DELETE", s.URL+"/api/v1/poi/"+poi, s.AdminKey, "", nil); r.code != 200 {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	login := call(t, "POST", s.URL+"/api/v1/session", "", "application/json", jsonBody(map[string]string{"key": op}))
	if login.code != 200 {
		t.Fatalf("login: %d %s", login.code, login.body)
	}
	cookie := login.header.Get("Set-Cookie")
	csrf := login.json(t)["csrf_token"].(string)
	if r := call(t, "DELETE", s.URL+"/api/v1/session", "", "", nil, func(r *http.Request) {
		r.Header.Set("Cookie", strings.Split(cookie, ";")[0])
		r.Header.Set("X-CSRF-Token", csrf)
	}); r.code != 200 {
		t.Fatalf("logout: %d %s", r.code, r.body)
	}
	if r := call(t, "GET", s.URL+"/api/v1/poi", "poi_0123456789abcdef_"+strings.Repeat("A", 43), "", nil); r.code != 401 {
		t.Fatalf("unknown key: %d", r.code)
	}
	if r := call(t, "DELETE", s.URL+"/api/v1/keys/investigator", s.AdminKey, "", nil); r.code != 200 {
		t.Fatalf("revoke: %d", r.code)
	}

	byAction := map[string][]streams.AuditEvent{}
	for _, ev := range auditRecords(t, s) {
		if ev.Time.IsZero() || ev.Remote == "" || ev.Actor.Role == "" {
			t.Errorf("record without when, where or who: %+v", ev)
		}
		if ev.Actor.Name != "bootstrap" && ev.RequestID == "" {
			t.Errorf("record without a request id: %+v", ev)
		}
		byAction[ev.Action] = append(byAction[ev.Action], ev)
	}
	want := map[string]int{"key.create": 2, "poi.enroll": 1, "search": 3, "alerts.clear": 1, "poi.delete": 1,
		"session.login": 1, "session.logout": 1, "auth.failed": 1, "key.revoke": 1}
	for action, n := range want {
		if len(byAction[action]) != n {
			t.Errorf("%d %s records, want %d: %+v", len(byAction[action]), action, n, byAction[action])
		}
	}
	if len(byAction) != len(want) {
		t.Errorf("actions recorded: %v, want %v", keysOfEvents(byAction), want)
	}
	actor := func(action string, i int) string {
		return byAction[action][i].Actor.Name + "/" + byAction[action][i].Actor.Role
	}
	for action, who := range map[string]string{"poi.enroll": "investigator/operator", "alerts.clear": "investigator/operator",
		"poi.delete": "admin/admin", "session.login": "investigator/operator", "session.logout": "investigator/operator", "key.revoke": "admin/admin"} {
		if len(byAction[action]) > 0 && actor(action, 0) != who {
			t.Errorf("%s by %s, want %s", action, actor(action, 0), who)
		}
	}
	if s := byAction["search"]; len(s) == 3 {
		if s[0].Details["stage"] != "poi_index" || s[0].Details["matched_poi_id"] != poi || s[0].Details["results"] != float64(0) {
			t.Errorf("stage 1 record %+v", s[0].Details)
		}
		if s[1].Details["refused"] != "reason required" || s[1].Details["stage"] != "detection_index" {
			t.Errorf("refused stage 2 record %+v", s[1].Details)
		}
		if s[2].Details["reason"] != "case 2026-042" || s[2].Details["start_time"] != "2026-11-01T00:00:00Z" || s[2].Details["end_time"] != "2026-11-02T00:00:00Z" || actor("search", 2) != "investigator/operator" {
			t.Errorf("stage 2 record %+v by %s", s[2].Details, actor("search", 2))
		}
	}
	if f := byAction["auth.failed"]; len(f) == 1 && f[0].Details["reason"] != auth.ReasonUnknown {
		t.Errorf("failed authentication record %+v", f[0])
	}

	// The same records through the API, filtered.
	r = call(t, "GET", s.URL+"/api/v1/audit?actor=investigator&action=search", s.AdminKey, "", nil)
	if m := r.json(t); r.code != 200 || m["count"] != float64(3) || m["more"] != false {
		t.Fatalf("audit by actor and action: %d %s", r.code, r.body)
	}
	r = call(t, "GET", s.URL+"/api/v1/audit?limit=2", s.AdminKey, "", nil)
	if m := r.json(t); r.code != 200 || m["count"] != float64(2) || m["more"] != true {
		t.Fatalf("audit with a limit: %d %s", r.code, r.body)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if r := call(t, "GET", s.URL+"/api/v1/audit?since="+future, s.AdminKey, "", nil); r.json(t)["count"] != float64(0) {
		t.Fatalf("audit since the future: %s", r.body)
	}
	r = call(t, "GET", s.URL+"/api/v1/audit?limit=0", s.AdminKey, "", nil)
	wantError(t, "limit 0", r.code, r.json(t), 422, "limit")
}

func keysOfEvents(m map[string][]streams.AuditEvent) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func multipartOf(t *testing.T, files []file, fields map[string]string) (string, []byte) {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, f := range files {
		fw, _ := w.CreateFormFile(f.field, f.name)
		fw.Write(f.data)
	}
	for k, v := range fields {
		w.WriteField(k, v)
	}
	w.Close()
	return w.FormDataContentType(), body.Bytes()
}

func TestSessionCookieNeedsTheCSRFTokenForChanges(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Auth: true, Env: []string{`POI_API_CORS_ORIGINS=["https://console.example"]`}})
	op := createKey(t, s, s.AdminKey, "console", "operator")

	// A cross-site form cannot log in: the exchange takes JSON only.
	ctype, body := multipartOf(t, nil, map[string]string{"key": op})
	if r := call(t, "POST", s.URL+"/api/v1/session", "", ctype, body); r.code != 415 {
		t.Fatalf("form login: %d", r.code)
	}
	if r := call(t, "POST", s.URL+"/api/v1/session", "", "application/json", jsonBody(map[string]string{"key": "nope"})); r.code != 401 {
		t.Fatalf("login with a bad key: %d", r.code)
	}
	login := call(t, "POST", s.URL+"/api/v1/session", "", "application/json", jsonBody(map[string]string{"key": op}))
	if login.code != 200 {
		t.Fatalf("login: %d %s", login.code, login.body)
	}
	resp := &http.Response{Header: login.header}
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != "poi_session" || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Secure {
		t.Fatalf("session cookie %+v (Set-Cookie %q): want HttpOnly, SameSite=Strict, not Secure over plain HTTP", cookies, login.header.Get("Set-Cookie"))
	}
	if strings.Contains(string(login.body), cookies[0].Value) {
		t.Fatal("the session token is in the body: script could read it")
	}
	m := login.json(t)
	csrf := m["csrf_token"].(string)
	if m["key_name"] != "console" || m["role"] != "operator" || len(csrf) < 40 {
		t.Fatalf("login body %v", m)
	}
	withCookie := func(token string) func(*http.Request) {
		return func(r *http.Request) {
			r.AddCookie(cookies[0])
			if token != "" {
				r.Header.Set("X-CSRF-Token", token)
			}
		}
	}
	if r := call(t, "GET", s.URL+"/api/v1/poi", "", "", nil, withCookie("")); r.code != 200 {
		t.Fatalf("read by cookie: %d %s", r.code, r.body)
	}
	if r := call(t, "GET", s.URL+"/api/v1/session", "", "", nil, withCookie("")); r.code != 200 || r.json(t)["via"] != "session" || r.json(t)["key_name"] != "console" {
		t.Fatalf("whoami: %d %s", r.code, r.body)
	}
	for _, token := range []string{"", csrf[:len(csrf)-1] + "x"} {
		r := call(t, "DELETE", s.URL+"/api/v1/alerts", "", "", nil, withCookie(token))
		wantError(t, "change by cookie with CSRF token "+strconv.Quote(token), r.code, r.json(t), 403, "X-CSRF-Token")
	}
	if r := call(t, "DELETE", s.URL+"/api/v1/alerts", "", "", nil, withCookie(csrf)); r.code != 200 {
		t.Fatalf("change by cookie with its CSRF token: %d %s", r.code, r.body)
	}
	// The session's key decides its role.
	if r := call(t, "DELETE", s.URL+"/api/v1/poi/poi-00000000", "", "", nil, withCookie(csrf)); r.code != 403 {
		t.Fatalf("an operator's session deleting a POI: %d", r.code)
	}
	if r := call(t, "DELETE", s.URL+"/api/v1/session", "", "", nil, withCookie(csrf)); r.code != 200 {
		t.Fatalf("logout: %d", r.code)
	}
	if r := call(t, "GET", s.URL+"/api/v1/poi", "", "", nil, withCookie("")); r.code != 401 {
		t.Fatalf("read by cookie after logout: %d", r.code)
	}

	// Revoking a key ends its sessions.
	login = call(t, "POST", s.URL+"/api/v1/session", "", "application/json", jsonBody(map[string]string{"key": op}))
	cookies = (&http.Response{Header: login.header}).Cookies()
	call(t, "DELETE", s.URL+"/api/v1/keys/console", s.AdminKey, "", nil)
	if r := call(t, "GET", s.URL+"/api/v1/poi", "", "", nil, withCookie("")); r.code != 401 {
		t.Fatalf("read by the cookie of a revoked key: %d", r.code)
	}

	// CORS: the configured origin only.
	origin := func(o string) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set("Origin", o)
			r.Header.Set("Access-Control-Request-Method", "POST")
		}
	}
	if r := call(t, "OPTIONS", s.URL+"/api/v1/poi", "", "", nil, origin("https://console.example")); r.code != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://console.example" {
		t.Fatalf("preflight of the allowed origin: %d %v", r.code, r.header)
	}
	if r := call(t, "OPTIONS", s.URL+"/api/v1/poi", "", "", nil, origin("https://evil.example")); r.code == 204 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight of another origin: %d %v", r.code, r.header)
	}
	if r := call(t, "GET", s.URL+"/api/v1/poi", s.AdminKey, "", nil, origin("https://evil.example")); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("a read from another origin carries CORS headers: %v", r.header)
	}
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Auth: true, Env: []string{"POI_API_RATE_LIMIT_RATE=0.01", "POI_API_RATE_LIMIT_BURST=2"}})
	a := createKey(t, s, s.AdminKey, "a", "operator")
	b := createKey(t, s, s.AdminKey, "b", "operator")
	ctype, body := emptyForm()
	for i := range 2 {
		if r := call(t, "POST", s.URL+"/api/v1/search", a, ctype, body); r.code != 422 {
			t.Fatalf("search %d within the burst: %d %s", i+1, r.code, r.body)
		}
	}
	r := call(t, "POST", s.URL+"/api/v1/search", a, ctype, body)
	wantError(t, "search over the limit", r.code, r.json(t), 429, "search")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 100 {
		t.Fatalf("Retry-After %q: want whole seconds until the next token (100 s at 0.01/s)", r.header.Get("Retry-After"))
	}
	// Another key has its own bucket, and enrolments their own.
	if r := call(t, "POST", s.URL+"/api/v1/search", b, ctype, body); r.code != 422 {
		t.Fatalf("another key's search: %d", r.code)
	}
	if r := call(t, "POST", s.URL+"/api/v1/poi", a, ctype, body); r.code != 422 {
		t.Fatalf("the same key's enrolment: %d", r.code)
	}
	// Reads are not limited.
	if r := call(t, "GET", s.URL+"/api/v1/poi", a, "", nil); r.code != 200 {
		t.Fatalf("read: %d", r.code)
	}
}

func TestImagesAreNotSniffedNorSharedInCaches(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Auth: true})
	k := s.Store.Keys()
	opt, _ := redis.ParseURL(s.Redis.URL())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Set(context.Background(), k.TrackFrame("cam:x:1", "entry"), testenv.ReadPhoto(t, "cage.jpg"), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	r := call(t, "GET", s.URL+api.FrameURL(k.TrackFrame("cam:x:1", "entry")), s.AdminKey, "", nil)
	if r.code != 200 || r.header.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(r.header.Get("Cache-Control"), "private") {
		t.Fatalf("frame: %d %v", r.code, r.header)
	}
}
