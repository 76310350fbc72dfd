package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"poi/api"
	"poi/internal/stacktest"
	"poi/internal/testenv"
)

type file struct {
	field, name string
	data        []byte
}

func photo(t *testing.T, name string) file {
	return file{"images", name, testenv.ReadPhoto(t, name)}
}

// post sends a multipart form and decodes the JSON answer.
func post(t *testing.T, url string, files []file, fields map[string]string) (int, map[string]any) {
	t.Helper()
	ct, body := multipartOf(t, files, fields)
	resp, err := http.Post(url, ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

func decode(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: content type %q", resp.Request.Method, resp.Request.URL.Path, ct)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return resp.StatusCode, m
}

func do(t *testing.T, method, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// wantError checks the shape of every failure: {error, detail}.
func wantError(t *testing.T, what string, code int, m map[string]any, wantCode int, detailHas string) {
	t.Helper()
	if code != wantCode {
		t.Fatalf("%s: status %d, want %d (%v)", what, code, wantCode, m)
	}
	e, ok1 := m["error"].(string)
	d, ok2 := m["detail"].(string)
	if !ok1 || !ok2 || e == "" || len(m) != 2 {
		t.Fatalf("%s: error body %v, want exactly {error, detail}", what, m)
	}
	if !strings.Contains(d, detailHas) {
		t.Fatalf("%s: detail %q does not mention %q", what, d, detailHas)
	}
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func hasKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Fatalf("%s lacks %q: %v", what, k, keysOf(m))
		}
	}
}

func blankJPEG(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 320, 240))
	for i := range img.Pix {
		img.Pix[i] = 180
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngBomb is a valid PNG header announcing 30000x30000 pixels.
func pngBomb() []byte {
	ihdr := []byte{'I', 'H', 'D', 'R', 0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30, 8, 2, 0, 0, 0}
	b := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0d"), ihdr...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(ihdr))
}

func TestEnrollListGetDelete(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	ctx := context.Background()
	code, first := post(t, s.URL+"/api/v1/poi", []file{photo(t, "Justin-Bieber2_crop.jpg")}, map[string]string{"severity": "high", "description": "Shoplifting suspect"})
	if code != http.StatusCreated {
		t.Fatalf("enroll: %d %v", code, first)
	}
	hasKeys(t, "enroll", first, "poi_id", "severity", "notes", "reference_images", "status", "created_at")
	id := first["poi_id"].(string)
	if len(id) != 20 || !strings.HasPrefix(id, "poi-") || first["severity"] != "high" || first["notes"] != "Shoplifting suspect" || first["status"] != "active" {
		t.Fatalf("enroll body %v", first)
	}
	if _, err := time.Parse(time.RFC3339, first["created_at"].(string)); err != nil || !strings.HasSuffix(first["created_at"].(string), "Z") {
		t.Fatalf("created_at %v", first["created_at"])
	}
	refs := first["reference_images"].([]any)
	ref := refs[0].(map[string]any)
	if len(refs) != 1 || ref["vector_dim"].(float64) != 512 || !strings.HasPrefix(ref["embedding_id"].(string), "emb-") || len(ref) != 2 {
		t.Fatalf("reference_images %v", refs)
	}
	// The face the engine used is served at the photo's photo_url, and as
	// the POI's first reference photo.
	img0 := first["images"].([]any)[0].(map[string]any)
	if img0["photo_url"] != "/api/v1/poi/"+first["poi_id"].(string)+"/photos/"+ref["embedding_id"].(string) {
		t.Fatalf("images[0] %v", img0)
	}
	stacktest.GetJPEG(t, s.URL+img0["photo_url"].(string))
	stacktest.GetJPEG(t, s.URL+"/api/v1/poi/"+first["poi_id"].(string)+"/photo")

	// Not a wait for anything: created_at has whole seconds and the list is
	// newest first, so the second POI must be enrolled in a later second
	// for the order below to be defined.
	time.Sleep(1100 * time.Millisecond)
	code, second := post(t, s.URL+"/api/v1/poi", []file{photo(t, "cage.jpg"), photo(t, "cage2_crop.jpg")}, map[string]string{"notes": "alias of description"})
	if code != http.StatusCreated || second["severity"] != "medium" || second["notes"] != "alias of description" || len(second["reference_images"].([]any)) != 2 {
		t.Fatalf("second enroll: %d %v", code, second)
	}
	id2 := second["poi_id"].(string)

	// Newest first.
	code, raw := do(t, "GET", s.URL+"/api/v1/poi")
	var list []map[string]any
	json.Unmarshal(raw, &list)
	if code != 200 || len(list) != 2 || list[0]["poi_id"] != id2 || list[1]["poi_id"] != id {
		t.Fatalf("list: %d %s", code, raw)
	}
	if got := keysOf(list[0]); strings.Join(got, ",") != "created_at,notes,poi_id,severity,status" {
		t.Fatalf("list item keys %v", got)
	}

	code, raw = do(t, "GET", s.URL+"/api/v1/poi/"+id)
	var one map[string]any
	json.Unmarshal(raw, &one)
	if code != 200 || one["poi_id"] != id || len(one["reference_images"].([]any)) != 1 {
		t.Fatalf("get: %d %s", code, raw)
	}
	_, st := getJSON(t, s.URL+"/api/v1/status")
	if st["faiss_vectors"].(float64) != 3 {
		t.Fatalf("faiss_vectors %v, want 3 reference vectors", st["faiss_vectors"])
	}

	// Delete: gone from every endpoint, Redis and the index.
	code, raw = do(t, "DELETE", s.URL+"/api/v1/poi/"+id)
	var del map[string]any
	json.Unmarshal(raw, &del)
	if code != 200 || del["status"] != "deleted" || del["poi_id"] != id || len(del) != 2 {
		t.Fatalf("delete: %d %s", code, raw)
	}
	req, _ := http.NewRequest("GET", s.URL+"/api/v1/poi/"+id, nil)
	resp, _ := http.DefaultClient.Do(req)
	c, body := decode(t, resp)
	wantError(t, "GET deleted", c, body, 404, id)
	// A repeated DELETE is idempotent while the tombstone lives.
	if code, raw := do(t, "DELETE", s.URL+"/api/v1/poi/"+id); code != 200 || !strings.Contains(string(raw), `"deleted"`) {
		t.Fatalf("repeated delete: %d %s", code, raw)
	}
	keys, err := s.Store.KeysNaming(ctx, id[len("poi-"):])
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys still naming %s: %v %v", id, keys, err)
	}
	_, st = getJSON(t, s.URL+"/api/v1/status")
	if st["faiss_vectors"].(float64) != 2 {
		t.Fatalf("faiss_vectors %v after delete, want 2", st["faiss_vectors"])
	}
	code, raw = do(t, "GET", s.URL+"/api/v1/poi")
	json.Unmarshal(raw, &list)
	if len(list) != 1 || list[0]["poi_id"] != id2 {
		t.Fatalf("list after delete: %s", raw)
	}
	// The deleted face no longer matches stage 1.
	code, res := post(t, s.URL+"/api/v1/search", []file{{"image", "q.jpg", testenv.ReadPhoto(t, "bieber_small.jpg")}}, nil)
	if code != 200 || res["matched_poi_id"] != nil {
		t.Fatalf("search after delete: %d %v", code, res)
	}
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, resp)
}

// answerBound bounds how long a request that must not hang may take. It is
// generous on purpose: it tells a hang from an answer, not fast from slow,
// so a loaded machine cannot fail the test.
const answerBound = 30 * time.Second

// getJSONAnswered is getJSON for a request that must be answered rather
// than left hanging on a dependency that is down.
func getJSONAnswered(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	c := http.Client{Timeout: answerBound}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: no answer within %s, it must report instead of hanging: %v", url, answerBound, err)
	}
	return decode(t, resp)
}

func TestEnrollRejectsBadInput(t *testing.T) {
	// Eleven enrolments in about a second and a half: beyond the default
	// bucket (10, then 2 a second), and the rate limit is not under test.
	s := stacktest.Start(t, stacktest.Options{Env: []string{"POI_API_RATE_LIMIT_BURST=1000"}})
	url := s.URL + "/api/v1/poi"
	jpg := testenv.ReadPhoto(t, "cage.jpg")
	six := make([]file, 6)
	for i := range six {
		six[i] = file{"images", "p" + strconv.Itoa(i) + ".jpg", jpg}
	}
	big := append(append([]byte{}, jpg...), make([]byte, 12<<20)...)
	cases := []struct {
		name   string
		files  []file
		fields map[string]string
		code   int
		detail string
	}{
		{"no images", nil, nil, 422, "images"},
		{"six images", six, nil, 422, "images"},
		{"bad severity", []file{photo(t, "cage.jpg")}, map[string]string{"severity": "urgent"}, 422, "severity"},
		{"text file", []file{{"images", "notes.txt", []byte("just some text, not a photo")}}, nil, 422, "notes.txt"},
		{"zero bytes", []file{{"images", "empty.jpg", nil}}, nil, 422, "empty.jpg"},
		{"truncated jpeg", []file{{"images", "cut.jpg", jpg[:len(jpg)/3]}}, nil, 422, "cut.jpg"},
		{"decompression bomb", []file{{"images", "bomb.png", pngBomb()}}, nil, 413, "bomb.png"},
		{"12 MB file", []file{{"images", "big.jpg", big}}, nil, 413, ""},
		{"no face", []file{{"images", "wall.jpg", blankJPEG(t)}}, nil, 422, "face"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, m := post(t, url, tc.files, tc.fields)
			wantError(t, tc.name, code, m, tc.code, tc.detail)
		})
	}
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"images": []}`))
	if err != nil {
		t.Fatal(err)
	}
	code, m := decode(t, resp)
	wantError(t, "not multipart", code, m, 400, "")

	// A photo without a face is reported, the others enrolled; a group
	// photo says which face was used.
	code, m = post(t, url, []file{{"images", "wall.jpg", blankJPEG(t)}, photo(t, "faces.jpg")}, nil)
	if code != 201 {
		t.Fatalf("mixed enroll: %d %v", code, m)
	}
	imgs := m["images"].([]any)
	wall, group := imgs[0].(map[string]any), imgs[1].(map[string]any)
	if wall["rejected"] != "no face found" || group["faces_detected"].(float64) != 3 || len(group["face_bbox"].([]any)) != 4 {
		t.Fatalf("images report %v", imgs)
	}
	// Nothing of the failed attempts was stored.
	_, raw := do(t, "GET", s.URL+"/api/v1/poi")
	var list []any
	json.Unmarshal(raw, &list)
	if len(list) != 1 {
		t.Fatalf("%d POIs stored, want only the mixed one", len(list))
	}
}

func TestUnknownIDsRoutesAndMethodsAreJSON404s(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	for _, tc := range []struct{ method, path, detail string }{
		{"GET", "/api/v1/poi/poi-00000000", "poi-00000000"},
		{"GET", "/api/v1/poi/not-an-id", "not-an-id"},
		{"DELETE", "/api/v1/poi/poi-00000000", "poi-00000000"},
		{"GET", "/api/v1/thumbnail/cam:x:1", "cam:x:1"},
		{"GET", "/api/v1/cameras/nope", "nope"},
		{"GET", "/api/v1/nothing", "/api/v1/nothing"},
		{"GET", "/api/v1/frames/" + base64.RawURLEncoding.EncodeToString([]byte("poi:index")), ""},
		{"GET", "/api/v1/frames/" + base64.RawURLEncoding.EncodeToString([]byte("track:state:cam")), ""},
		{"GET", "/api/v1/frames/" + base64.RawURLEncoding.EncodeToString([]byte("track:frame:cam:x:1:entry")), ""},
		{"GET", "/api/v1/frames/%25%25", ""},
	} {
		req, _ := http.NewRequest(tc.method, s.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		code, m := decode(t, resp)
		wantError(t, tc.method+" "+tc.path, code, m, 404, tc.detail)
	}
	req, _ := http.NewRequest("PUT", s.URL+"/api/v1/alerts", nil)
	resp, _ := http.DefaultClient.Do(req)
	code, m := decode(t, resp)
	wantError(t, "PUT /alerts", code, m, 405, "PUT")
}

func TestCamerasFromConfigurationAndMQTT(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Env: []string{`POI_CAMERAS=[{"id":"Camera_01","name":"Entrance Camera"}]`}})
	if err := s.Store.MarkCameraSeen(context.Background(), "cam-seen", time.Now(), time.Hour, 100); err != nil {
		t.Fatal(err)
	}
	code, m := getJSON(t, s.URL+"/api/v1/cameras")
	cams := m["cameras"].([]any)
	if code != 200 || m["count"].(float64) != 2 || len(cams) != 2 {
		t.Fatalf("cameras: %d %v", code, m)
	}
	first := cams[0].(map[string]any)
	if first["id"] != "Camera_01" || first["name"] != "Entrance Camera" || len(first) != 2 {
		t.Fatalf("camera %v", first)
	}
	code, m = getJSON(t, s.URL+"/api/v1/cameras/cam-seen")
	if code != 200 || m["id"] != "cam-seen" || m["name"] != "cam-seen" {
		t.Fatalf("camera: %d %v", code, m)
	}
}

// fakeSceneScape stands in for SceneScape's REST API (an external system):
// it accepts only a token it hands out at /api/v1/auth.
func fakeSceneScape(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/auth":
			var in map[string]string
			json.NewDecoder(r.Body).Decode(&in)
			if in["username"] != "admin" || in["password"] != "pw" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"token": "fresh"})
		case "/api/v1/cameras":
			if r.Header.Get("Authorization") != "Token fresh" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"count": 1, "results": []map[string]string{{"uid": "Camera_01", "name": "Entrance Camera"}}})
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCamerasFromSceneScapeRenewTokenAndFailFast(t *testing.T) {
	ss := fakeSceneScape(t)
	s := stacktest.Start(t, stacktest.Options{Env: []string{
		"POI_SCENESCAPE_URL=" + ss.URL, "POI_SCENESCAPE_TOKEN=expired", "POI_SCENESCAPE_USERNAME=admin", "POI_SCENESCAPE_PASSWORD=pw",
	}})
	code, m := getJSON(t, s.URL+"/api/v1/cameras")
	if code != 200 || m["count"].(float64) != 1 || m["cameras"].([]any)[0].(map[string]any)["name"] != "Entrance Camera" {
		t.Fatalf("cameras via scenescape: %d %v", code, m)
	}
	code, m = getJSON(t, s.URL+"/api/v1/cameras/Camera_02")
	wantError(t, "unknown camera", code, m, 404, "Camera_02")

	down := stacktest.Start(t, stacktest.Options{Env: []string{"POI_SCENESCAPE_URL=http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), "POI_SCENESCAPE_TIMEOUT=1s"}})
	code, m = getJSONAnswered(t, down.URL+"/api/v1/cameras")
	wantError(t, "scenescape down", code, m, 502, "scenescape")
}

// TestOpenAPIDescribesEveryRoute walks the router against the document.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	code, doc := getJSON(t, s.URL+"/api/v1/openapi.json")
	if code != 200 || doc["openapi"] != "3.0.3" {
		t.Fatalf("openapi: %d", code)
	}
	paths := doc["paths"].(map[string]any)
	srv := api.New(api.Deps{Config: s.Config, Metrics: s.Node.Metrics()})
	routes := srv.Handler().(*gin.Engine).Routes()
	if len(routes) < 13 {
		t.Fatalf("only %d routes", len(routes))
	}
	roles := map[string]string{}
	for _, r := range srv.Routes() {
		roles[r.Method+" "+r.Path] = r.Role.String()
	}
	documented := 0
	for _, r := range routes {
		p := r.Path
		for _, seg := range strings.Split(p, "/") {
			if strings.HasPrefix(seg, ":") {
				p = strings.Replace(p, seg, "{"+seg[1:]+"}", 1)
			}
		}
		item, ok := paths[p].(map[string]any)
		if !ok {
			t.Errorf("route %s %s is not in the OpenAPI document", r.Method, p)
			continue
		}
		op, ok := item[strings.ToLower(r.Method)].(map[string]any)
		if !ok {
			t.Errorf("route %s %s: method not in the document", r.Method, p)
			continue
		}
		if got, want := op["x-required-role"], roles[r.Method+" "+r.Path]; got != want {
			t.Errorf("%s %s: the document says role %v, the route table %s", r.Method, p, got, want)
		}
		if _, ok := op["responses"].(map[string]any)["200"]; !ok {
			if _, ok := op["responses"].(map[string]any)["201"]; !ok {
				t.Errorf("%s %s documents no success response", r.Method, p)
			}
		}
		documented++
	}
	ops := 0
	for _, item := range paths {
		for k := range item.(map[string]any) {
			if k != "parameters" {
				ops++
			}
		}
	}
	if ops != documented {
		t.Errorf("the document describes %d operations, the router serves %d", ops, documented)
	}
}

func TestRedisOutageIsA503NotAHang(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	s.Redis.Stop()
	code, m := getJSONAnswered(t, s.URL+"/api/v1/poi")
	wantError(t, "list while redis is down", code, m, 503, "unreachable")
	code, m = getJSONAnswered(t, s.URL+"/api/v1/status")
	if code != 503 || m["status"] != "degraded" {
		t.Fatalf("status %d %v", code, m)
	}
	s.Redis.Start()
	stacktest.Eventually(t, 10*time.Second, "redis back", func() bool {
		code, body := do(t, "GET", s.URL+"/api/v1/poi")
		return code == 200 && strings.TrimSpace(string(body)) == "[]"
	})
}
