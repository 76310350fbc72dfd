package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"poi/internal/stacktest"
	"poi/internal/testenv"
)

// The console's tests drive Debian's chromium (scripts/setup.sh installs
// it) through the pages as an operator would, against the real stack with
// access control on.

// browserDeadline bounds one test's browser session: every wait below is
// on a condition, and this is the most any of them may take.
const browserDeadline = 3 * time.Minute

// browser starts a headless chromium at a fixed window size and returns a
// context to run actions in. A script error on the page fails the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	exe := os.Getenv("POI_CHROMIUM")
	if exe == "" {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				exe = p
				break
			}
		}
	}
	if exe == "" {
		t.Fatal("no chromium on PATH: run scripts/setup.sh (it installs Debian's chromium) or set POI_CHROMIUM")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1440, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, browserDeadline)
	done := make(chan struct{})
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc(); <-done })
	msgs := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleException:
				t.Errorf("script error on the page: %s (%s:%d)", m.Text, m.URL, m.Line+1)
			case chromedp.ConsoleError:
				t.Logf("console error: %s (%s)", m.Text, m.URL)
			}
		}
	}()
	// The window's size includes no browser chrome when headless, but the
	// viewport is pinned too, so screenshots are 1440x900 whatever the build.
	steps(t, ctx, chromedp.EmulateViewport(1440, 900))
	return ctx
}

// steps runs actions and fails the test on the first error.
func steps(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// get runs one action that returns a value.
func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// until waits for a JavaScript expression to be true on the page.
func until(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](expr)(ctx, tg)
		return chromedp.Void{}, err
	}
}

// visible waits for the element sel to be shown.
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// login signs in on the console's page with key and waits for the shell.
func login(t *testing.T, ctx context.Context, base, key string) {
	t.Helper()
	steps(t, ctx,
		chromedp.Navigate(base+"/"),
		visible("#login-key"),
		// From the keyboard: the key, then Enter.
		chromedp.SendKeys(chromedp.CSS("#login-key"), key+kb.Enter),
		visible("#shell"),
		visible("#feed-state"),
	)
}

// screenshot saves the page as it is under the test-output folder
// ($POI_TEST_OUTPUT, else test-output/ at the repository root).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("POI_TEST_OUTPUT")
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(t), "test-output")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Every control shown has a name a screen reader can say.
	unnamed := get(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('input, select, textarea, button, a[href]')]
		.filter((e) => e.getClientRects().length || e.classList.contains('visually-hidden'))
		.filter((e) => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim() || e.getAttribute('title')))
		.map((e) => e.outerHTML.slice(0, 120))`))
	for _, e := range unnamed {
		t.Errorf("%s: a control without a label: %s", name, e)
	}
	png := get(t, ctx, chromedp.CaptureScreenshot())
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// imagesLoaded waits until every image matching sel has decoded.
func imagesLoaded(sel string) chromedp.Action[chromedp.Void] {
	return until(`(() => { const xs = [...document.querySelectorAll(` + jsString(sel) + `)]; return xs.length > 0 && xs.every((i) => i.complete && i.naturalWidth > 0); })()`)
}

func jsString(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `\'`) + "'"
}

func TestConsoleLogsInAndEnrollsByUpload(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Auth: true})
	ctx := browser(t)
	blank := filepath.Join(t.TempDir(), "empty-room.jpg")
	if err := os.WriteFile(blank, blankJPEG(t), 0o644); err != nil {
		t.Fatal(err)
	}

	// A wrong key is refused on the page, with a reason.
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/"),
		visible("#login-key"),
		chromedp.SendKeys(chromedp.CSS("#login-key"), "poi_not-a-key"),
		chromedp.Click(chromedp.CSS("#login-submit")),
		visible("#login-error"),
	)
	login(t, ctx, s.URL, s.AdminKey)
	// The key is nowhere the page's scripts could read it back.
	stored := get(t, ctx, chromedp.Evaluate[string](`JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie + location.href`))
	if strings.Contains(stored, s.AdminKey) {
		t.Fatalf("the API key is readable by the page: %s", stored)
	}

	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/watchlist"),
		visible("#poi-grid .state-empty"),
	)
	if got := get(t, ctx, chromedp.Text(chromedp.CSS("#poi-grid .state-empty h3"))); got != "The watchlist is empty" {
		t.Errorf("the empty watchlist says %q", got)
	}
	steps(t, ctx,
		chromedp.Click(chromedp.CSS("#enroll-open")),
		visible("#enroll-form"),
		// Two photos of one person and one without a face: the page shows
		// which face was used in each and why the last was not.
		chromedp.SetUploadFiles(chromedp.CSS("#enroll-files"), []string{testenv.Photo(t, "franck_01829.jpg"), testenv.Photo(t, "franck_02045.jpg"), blank}),
		visible("#enroll-previews li:nth-child(3) img"),
		chromedp.SetValue(chromedp.CSS("#enroll-severity"), "high"),
		chromedp.SendKeys(chromedp.CSS("#enroll-notes"), "Seen near the loading bay, case 4411"),
		chromedp.Click(chromedp.CSS("#enroll-submit")),
		visible("#enroll-done"),
		imagesLoaded("#enroll-done .engine-face"),
	)
	poi := get(t, ctx, chromedp.AttributeValue(chromedp.CSS("#enroll-done"), "data-poi-id")).Value
	used := get(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#enroll-done .face-result.used .bbox').length`))
	rejected := get(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#enroll-done .face-result.rejected').length`))
	why := get(t, ctx, chromedp.Text(chromedp.CSS("#enroll-done .face-result.rejected .why")))
	if !strings.HasPrefix(poi, "poi-") || used != 2 || rejected != 1 || !strings.Contains(why, "no face found") {
		t.Fatalf("enrolment shows POI %q with %d faces used, %d photos rejected (%q)", poi, used, rejected, why)
	}
	// The list shows the new POI with its thumbnail.
	card := `#poi-grid a.poi-card[data-poi-id="` + poi + `"]`
	steps(t, ctx, visible(card), imagesLoaded(card+" img"))
	if got := get(t, ctx, chromedp.Text(chromedp.CSS(card+" .notes"))); got != "Seen near the loading bay, case 4411" {
		t.Errorf("the card's notes %q", got)
	}
	// The server agrees.
	r := call(t, "GET", s.URL+"/api/v1/poi/"+poi, s.AdminKey, "", nil)
	if r.code != 200 || r.json(t)["severity"] != "high" {
		t.Fatalf("GET the enrolled POI: %d %s", r.code, r.body)
	}
	screenshot(t, ctx, "console-enroll")

	// Signing out ends the session on the server: the page is back at the
	// login, and the old cookie no longer reads anything.
	steps(t, ctx, chromedp.Click(chromedp.CSS("#logout")), visible("#login-key"))
	if code := get(t, ctx, chromedp.Evaluate[int](`fetch('/api/v1/poi').then((r) => r.status)`, chromedp.EvalAwaitPromise)); code != 401 {
		t.Errorf("after signing out the page reads the watchlist: %d", code)
	}
}

// enrollAs enrolls photos through the API with key and returns the POI id.
func enrollAs(t *testing.T, s *stacktest.Stack, key string, fields map[string]string, photos ...string) string {
	t.Helper()
	var files []file
	for _, p := range photos {
		files = append(files, photo(t, p))
	}
	ctype, body := multipartOf(t, files, fields)
	r := call(t, "POST", s.URL+"/api/v1/poi", key, ctype, body)
	if r.code != 201 {
		t.Fatalf("enroll %v: %d %s", photos, r.code, r.body)
	}
	return r.json(t)["poi_id"].(string)
}

// franckFrames are frames of the person enrolled with franck_01829.jpg.
var franckFrames = []string{"franck_02045.jpg", "franck_02159.jpg", "franck_02221.jpg", "franck_02683.jpg", "franck_02888.jpg"}

func TestConsoleShowsLiveAlertsWithoutReloading(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Auth: true})
	poi := enrollAs(t, s, s.AdminKey, map[string]string{"severity": "high", "description": "Wanted for questioning"}, "franck_01829.jpg")
	ctx := browser(t)
	login(t, ctx, s.URL, s.AdminKey)
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/alerts"),
		visible("#alert-list .state-empty"),
		until(`document.getElementById('feed-state').textContent.includes('connected')`),
		// A mark on this page: it is still there after the alert shows, so
		// the alert came without a reload.
		chromedp.Evaluate[chromedp.Void](`window.__samePage = true`),
	)
	publishFrames(t, s, "lobby-east", time.Now().UTC().Add(-5*time.Second), franckFrames...)
	card := `#alert-list .alert-card[data-poi-id="` + poi + `"]`
	steps(t, ctx,
		visible(card),
		imagesLoaded(card+" img"),
		visible("#toasts .toast-high"),
		until(`window.__samePage === true`),
	)
	text := get(t, ctx, chromedp.Text(chromedp.CSS(card)))
	for _, want := range []string{"HIGH", poi, "lobby-east", "Similarity", "%", "Wanted for questioning"} {
		if !strings.Contains(text, want) {
			t.Errorf("the alert card lacks %q: %q", want, text)
		}
	}
	// The high-severity cue fired, and can be switched off.
	if !get(t, ctx, chromedp.Evaluate[bool](`document.body.classList.contains('flash')`)) {
		t.Error("a high-severity alert did not flash the screen")
	}
	steps(t, ctx, chromedp.Click(chromedp.CSS("#cue-toggle")))
	if got := get(t, ctx, chromedp.Evaluate[string](`localStorage.getItem('poi.cue')`)); got != "off" {
		t.Errorf("the cue switch stored %q", got)
	}
	steps(t, ctx, chromedp.Click(chromedp.CSS("#cue-toggle")))
	// An operator acknowledges the alert from its card, with a note: the
	// card says so and the server holds the review.
	steps(t, ctx,
		chromedp.SendKeys(chromedp.CSS(card+" .review-note"), "guard sent"),
		chromedp.Click(chromedp.CSS(card+" .review-acknowledged")),
		until(`document.querySelector(`+jsString(card+" .status")+`).textContent === 'Acknowledged'`),
		until(`document.querySelector(`+jsString(card+" .review-acknowledged")+`).getAttribute('aria-pressed') === 'true'`),
	)
	r := call(t, "GET", s.URL+"/api/v1/alerts?poi_id="+poi, s.AdminKey, "", nil)
	var reviewed []map[string]any
	if err := json.Unmarshal(r.body, &reviewed); err != nil || len(reviewed) != 1 ||
		reviewed[0]["status"] != "Acknowledged" || reviewed[0]["review_note"] != "guard sent" || reviewed[0]["reviewed_by"] == nil {
		t.Fatalf("after the console's review: %d %s", r.code, r.body)
	}
	screenshot(t, ctx, "console-live-alert")
	// The same page on a 1080p wall display: the type scales up.
	steps(t, ctx, chromedp.EmulateViewport(1920, 1080), until(`getComputedStyle(document.documentElement).fontSize === '18px'`), visible(card))
	screenshot(t, ctx, "console-wall-1080p")
}

// seenFranck enrolls the person of franck_01829.jpg, has a camera see them
// and waits until the alert is stored: the state the search tests start from.
func seenFranck(t *testing.T, s *stacktest.Stack) string {
	t.Helper()
	poi := enrollAs(t, s, s.AdminKey, map[string]string{"severity": "medium", "description": "Repeat visitor, case 7720"}, "franck_01829.jpg")
	publishFrames(t, s, "atrium-north", time.Now().UTC().Add(-10*time.Minute), franckFrames...)
	stacktest.Eventually(t, time.Minute, "the alert stored", func() bool {
		r := call(t, "GET", s.URL+"/api/v1/alerts", s.AdminKey, "", nil)
		return r.code == 200 && strings.Contains(string(r.body), poi)
	})
	return poi
}

func TestConsoleSearchesByPhotoAndDeletes(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Auth: true})
	poi := seenFranck(t, s)
	ctx := browser(t)
	login(t, ctx, s.URL, s.AdminKey)

	// Another photo of the same person, over the last hour.
	app := `#search-result .appearance[data-track-id]`
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/search"),
		visible("#search-form"),
		chromedp.SetUploadFiles(chromedp.CSS("#search-file"), []string{testenv.Photo(t, "franck_03909.jpg")}),
		visible(".search-preview img"),
		chromedp.Click(chromedp.CSS("#range-hour")),
		chromedp.Click(chromedp.CSS("#search-submit")),
		visible(app),
		imagesLoaded(app+" img.entry-frame"),
		imagesLoaded(app+" img.exit-frame"),
		visible("#search-result .timeline .tl-span"),
	)
	stage := get(t, ctx, chromedp.AttributeValue(chromedp.CSS("#search-stage"), "data-stage")).Value
	head := get(t, ctx, chromedp.Text(chromedp.CSS("#search-stage")))
	card := get(t, ctx, chromedp.Text(chromedp.CSS(app)))
	if stage != "poi_index" || !strings.Contains(head, poi) || !strings.Contains(card, "atrium-north") || !strings.Contains(card, "similarity") {
		t.Fatalf("search shows stage %q, %q, %q", stage, head, card)
	}
	screenshot(t, ctx, "console-search")

	// The POI's page: references, the appearance, the alert history.
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/poi/"+poi),
		visible("#poi-title"),
		imagesLoaded(".refs img"),
		visible(".appearances .appearance"),
		visible(`.alert-card[data-poi-id="`+poi+`"]`),
	)
	screenshot(t, ctx, "console-poi")

	// Delete, confirmed in a dialog: the POI is gone from the list and the API.
	steps(t, ctx,
		chromedp.Click(chromedp.CSS("#poi-delete")),
		visible("dialog #dlg-confirm"),
		chromedp.Click(chromedp.CSS("dialog #dlg-confirm")),
		until(`location.hash === '#/watchlist'`),
		visible("#poi-grid .state-empty"),
	)
	if r := call(t, "GET", s.URL+"/api/v1/poi/"+poi, s.AdminKey, "", nil); r.code != 404 {
		t.Fatalf("GET the deleted POI: %d %s", r.code, r.body)
	}
	screenshot(t, ctx, "console-deleted")
}

func TestConsoleViewerCannotEnrollOrDelete(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Auth: true})
	viewer := createKey(t, s, s.AdminKey, "wall-display", "viewer")
	poi := enrollAs(t, s, s.AdminKey, map[string]string{"severity": "low", "description": "Shown to a viewer"}, "franck_01829.jpg")
	ctx := browser(t)
	login(t, ctx, s.URL, viewer)

	card := `#poi-grid a.poi-card[data-poi-id="` + poi + `"]`
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/watchlist"),
		visible(card),
		imagesLoaded(card+" img"),
	)
	if n := get(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#enroll-open, #enroll-form').length`)); n != 0 {
		t.Errorf("a viewer sees %d enrolment controls", n)
	}
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/poi/"+poi),
		visible("#poi-title"),
	)
	if n := get(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#poi-delete').length`)); n != 0 {
		t.Errorf("a viewer sees the delete button")
	}
	steps(t, ctx, chromedp.Navigate(s.URL+"/#/search"), visible("#search-form"), visible(".notice"))
	if !get(t, ctx, chromedp.Evaluate[bool](`document.getElementById('search-submit').disabled`)) {
		t.Error("a viewer can press Search")
	}
	// The server refuses what the page hides, even with the session's own
	// CSRF token: the role is enforced there, not here.
	for what, js := range map[string]string{
		"enroll": `(() => { const f = new FormData(); f.append('images', new Blob([new Uint8Array([255, 216, 255])], {type: 'image/jpeg'}), 'x.jpg');
			return fetch('/api/v1/poi', {method: 'POST', body: f, headers: {'X-CSRF-Token': sessionStorage.getItem('poi.csrf')}}).then((r) => r.status); })()`,
		"delete": `fetch('/api/v1/poi/` + poi + `', {method: 'DELETE', headers: {'X-CSRF-Token': sessionStorage.getItem('poi.csrf')}}).then((r) => r.status)`,
	} {
		if code := get(t, ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise)); code != 403 {
			t.Errorf("a viewer's %s from the page: %d, want 403", what, code)
		}
	}
	if r := call(t, "GET", s.URL+"/api/v1/poi/"+poi, s.AdminKey, "", nil); r.code != 200 {
		t.Fatalf("the POI after the viewer's attempts: %d", r.code)
	}
	steps(t, ctx, chromedp.Navigate(s.URL+"/#/watchlist"), visible(card), imagesLoaded(card+" img"))
	screenshot(t, ctx, "console-viewer")
}

func TestConsoleShowsCamerasAndSystem(t *testing.T) {
	// Tracks stay open through the test, so the camera wall has faces.
	s := stacktest.Start(t, stacktest.Options{Auth: true, Env: []string{"POI_PIPELINE_TRACK_SILENCE=10m"}})
	publishFrames(t, s, "gate-2", time.Now().UTC().Add(-3*time.Second), franckFrames...)
	ctx := browser(t)
	login(t, ctx, s.URL, s.AdminKey)
	card := `#cam-grid .cam-card[data-camera-id="gate-2"]`
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/cameras"),
		visible(card),
		imagesLoaded(card+" .cam-frame img"),
		visible(card+" .bbox"),
	)
	text := get(t, ctx, chromedp.Text(chromedp.CSS(card)))
	for _, want := range []string{"Frame rate", "fps", "Lag", "Open tracks1"} {
		if !strings.Contains(strings.ReplaceAll(text, "\n", ""), want) {
			t.Errorf("the camera card lacks %q: %q", want, text)
		}
	}
	screenshot(t, ctx, "console-cameras")

	stage := `#sys-stages .chart[data-stage="index"]`
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/system"),
		visible(stage+" svg.spark"),
		until(`document.getElementById('sys-status').textContent.includes('running')`),
	)
	if got := get(t, ctx, chromedp.Text(chromedp.CSS("#sys-dead"))); got != "0" {
		t.Errorf("dead-lettered shows %q, want 0", got)
	}
	if got := get(t, ctx, chromedp.Text(chromedp.CSS(stage))); !strings.Contains(got, fmt.Sprintf("%d processed", len(franckFrames))) {
		t.Errorf("the index stage shows %q, want %d processed", got, len(franckFrames))
	}
	screenshot(t, ctx, "console-system")

	// Redis goes down: a view that needs it says so, naming it, and the
	// health pill turns.
	s.Redis.Stop()
	steps(t, ctx,
		chromedp.Navigate(s.URL+"/#/watchlist"),
		visible("#poi-grid .state-error"),
		until(`document.querySelector('#health .pill').textContent.includes('degraded')`),
	)
	if got := get(t, ctx, chromedp.Text(chromedp.CSS("#poi-grid .state-error"))); !strings.Contains(got, "A dependency is unavailable") || !strings.Contains(got, "redis unreachable") {
		t.Errorf("the watchlist while Redis is down says %q", got)
	}
	screenshot(t, ctx, "console-redis-down")
}
