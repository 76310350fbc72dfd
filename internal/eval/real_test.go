package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"poi/internal/config"
	"poi/internal/testenv"
)

// engineEnv points the configuration at the models and runtime set-up
// fetched, whatever the test's working directory.
func engineEnv(t *testing.T) []string {
	return []string{
		"POI_FACE_MODEL_DIR=" + testenv.ModelDir(t),
		"POI_FACE_ORT_LIBRARY=" + testenv.ORTLibrary(t),
	}
}

// TestRealPhotos runs `poi eval --split --json` with the real engine on the
// evaluation set that scripts/setup.sh assembles, and checks that the
// result is sane: the two distributions are apart, the configured match
// threshold accepts the genuine pairs and (almost) no impostor, and the
// report admits that the set is too small for FAR 1e-3. Run with -v to see
// the text report.
func TestRealPhotos(t *testing.T) {
	dir := filepath.Join(testenv.AssetsDir(t), "eval")
	if _, err := os.Stat(filepath.Join(dir, ".ok")); err != nil {
		t.Fatalf("evaluation set missing (run `go tool task setup`): %v", err)
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{dir, "--split", "--json"}, engineEnv(t), &out, &errOut); code != 0 {
		t.Fatalf("poi eval exit %d: %s", code, errOut.String())
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, out.String())
	}
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + text.String())

	photos, err := ListPhotos(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Photos != len(photos) || len(r.Skipped) != 0 {
		t.Errorf("%d photos embedded, %d skipped (%+v), want all %d embedded", r.Photos, len(r.Skipped), r.Skipped, len(photos))
	}
	if r.Identities < 21 || r.Genuine.Count < 58 || len(r.MultiPhoto) < 4 {
		t.Errorf("%d identities, %d genuine pairs: smaller than the set setup assembles", r.Identities, r.Genuine.Count)
	}
	if !(r.Genuine.Median > r.Impostor.P99) || !(r.Genuine.Min > r.Impostor.Median) || !(r.Genuine.P5 > r.Impostor.P95) {
		t.Errorf("distributions overlap: genuine %+v impostor %+v", r.Genuine, r.Impostor)
	}
	if r.Impostor.Median < -0.1 || r.Impostor.Median > 0.1 {
		t.Errorf("impostor median %.3f, want near 0 for unrelated faces", r.Impostor.Median)
	}
	for _, p := range r.AtThreshold {
		if p.Name == "face.match_threshold" && (p.Threshold != 0.40 || p.TAR < 0.95 || p.FAR > 0.01) {
			t.Errorf("at the match threshold: %+v, want 0.40 with TAR >= 0.95 and FAR <= 0.01", p.Rates)
		}
		if p.Name == "face.search_threshold" && (p.Threshold != 0.30 || p.TAR < 0.95 || p.FAR > 0.05) {
			t.Errorf("at the search threshold: %+v, want 0.30 with TAR >= 0.95 and FAR <= 0.05", p.Rates)
		}
	}
	for _, p := range r.AtFAR {
		if p.FAR > p.TargetFAR || p.Threshold <= r.Impostor.Median || p.Threshold > r.Impostor.Max+1e-6 {
			t.Errorf("%s: threshold %.3f FAR %v, want FAR within target and the threshold among impostor scores", p.Name, p.Threshold, p.FAR)
		}
		if p.TargetFAR == 1e-3 && (p.Enough || !strings.Contains(p.Note, "too few impostor pairs")) {
			t.Errorf("FAR 1e-3 over %d impostor pairs not flagged as too few: %+v", r.Impostor.Count, p)
		}
	}

	sp := r.Split
	if sp == nil {
		t.Fatal("no split in the report")
	}
	ids := map[string]string{}
	for _, h := range sp.Halves {
		if h.GenuinePairs == 0 {
			t.Errorf("half %s has no genuine pairs", h.Name)
		}
		for _, id := range h.Identities {
			if other, ok := ids[id]; ok {
				t.Errorf("identity %s in halves %s and %s", id, other, h.Name)
			}
			ids[id] = h.Name
		}
	}
	if len(ids) != r.Identities || sp.Halves[0].Photos+sp.Halves[1].Photos != r.Photos {
		t.Errorf("halves hold %d identities and %d+%d photos, want %d and %d", len(ids),
			sp.Halves[0].Photos, sp.Halves[1].Photos, r.Identities, r.Photos)
	}
	for _, f := range sp.Folds {
		for _, p := range f.AtThreshold {
			if p.Name == "face.match_threshold" && p.TAR < 0.9 {
				t.Errorf("match threshold on held-out half %s: TAR %.3f", f.Test, p.TAR)
			}
		}
	}
}

// TestRealPhotoWithoutFace: a photo in which the engine finds no face is
// reported and skipped, and the rest is evaluated.
func TestRealPhotoWithoutFace(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"cage.jpg", "cage2_crop.jpg"} {
		if err := os.MkdirAll(filepath.Join(dir, "cage"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(testenv.Photo(t, name), filepath.Join(dir, "cage", name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "obama"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testenv.Photo(t, "obama4_crop.jpg"), filepath.Join(dir, "obama", "obama4_crop.jpg")); err != nil {
		t.Fatal(err)
	}
	grey := image.NewGray(image.Rect(0, 0, 320, 240))
	for i := range grey.Pix {
		grey.Pix[i] = uint8(100 + i%7)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, grey); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"obama/wall.png": b.String()})

	cfg, err := config.Load("", engineEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), cfg, dir, false, 1, discard())
	if err != nil {
		t.Fatal(err)
	}
	if r.Photos != 3 || len(r.Skipped) != 1 || !strings.HasSuffix(r.Skipped[0].Photo, "wall.png") ||
		!strings.Contains(r.Skipped[0].Reason, "no face") {
		t.Fatalf("%d photos, skipped %+v, want 3 and wall.png skipped for having no face", r.Photos, r.Skipped)
	}
	if r.Genuine.Count != 1 || r.Impostor.Count != 2 || r.Genuine.Min < 0.40 {
		t.Errorf("pairs %d genuine (min %.3f) / %d impostor, want the cage pair above 0.40 and 2 impostor pairs",
			r.Genuine.Count, r.Genuine.Min, r.Impostor.Count)
	}
}
