package face

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"poi/internal/imaging"
	"poi/internal/testenv"
)

func testConfig(tb testing.TB) Config {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.ModelDir = testenv.ModelDir(tb)
	cfg.LibraryPath = testenv.ORTLibrary(tb)
	return cfg
}

func newEngine(tb testing.TB) *Engine {
	tb.Helper()
	e, err := New(testConfig(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return e
}

func decode(tb testing.TB, name string) *image.RGBA {
	tb.Helper()
	img, err := imaging.Decode(testenv.ReadPhoto(tb, name), imaging.Limits{})
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return img
}

// identity is one face of the calibration set and who it is.
type identity struct {
	photo  string
	face   int // index among the faces Analyze finds (faces.jpg), -1 for the largest
	person string
}

// calibrationSet is every listed photo of RESEARCH.md §3: three pairs and
// eleven video frames of the same people, ten single people, and the three
// people of faces.jpg.
func calibrationSet() []identity {
	var s []identity
	add := func(person string, photos ...string) {
		for _, p := range photos {
			s = append(s, identity{p, -1, person})
		}
	}
	add("bieber", "Justin-Bieber2_crop.jpg", "bieber_small.jpg")
	add("cage", "cage.jpg", "cage2_crop.jpg")
	add("connery", "SeanConnery.jpg", "sean_guru2_crop.jpg")
	add("franck", "franck_01829.jpg", "franck_02045.jpg", "franck_02159.jpg", "franck_02221.jpg",
		"franck_02683.jpg", "franck_02888.jpg", "franck_03909.jpg", "franck_03979.jpg",
		"franck_04000.jpg", "franck_04035.jpg", "franck_04117.jpg")
	for _, p := range []string{"chuck_crop", "fragrance-George-Clooney-main_crop", "bill-murray-snl_crop",
		"kim1_crop", "obama4_crop", "queen20_crop", "ri_1_crop", "terminator_crop", "walter2_crop", "joconde_crop"} {
		add(p, p+".jpg")
	}
	for i := 0; i < 3; i++ {
		s = append(s, identity{"faces.jpg", i, fmt.Sprintf("faces.jpg#%d", i)})
	}
	return s
}

// TestSimilarityMatrix is the calibration evidence for DefaultMatchThreshold
// and DefaultSearchThreshold; run with -v to see the matrix.
func TestSimilarityMatrix(t *testing.T) {
	e := newEngine(t)
	set := calibrationSet()
	vecs := make([][]float32, len(set))
	analyzed := map[string][]Face{}
	for i, id := range set {
		if id.face < 0 {
			faces, idx, err := e.AnalyzeLargest(testenv.ReadPhoto(t, id.photo))
			if err != nil {
				t.Fatalf("%s: %v", id.photo, err)
			}
			if len(faces) != 1 {
				t.Errorf("%s: %d faces, want 1", id.photo, len(faces))
			}
			vecs[i] = faces[idx].Embedding
			continue
		}
		faces, ok := analyzed[id.photo]
		if !ok {
			var err error
			if faces, err = e.Analyze(testenv.ReadPhoto(t, id.photo)); err != nil {
				t.Fatalf("%s: %v", id.photo, err)
			}
			analyzed[id.photo] = faces
		}
		vecs[i] = faces[id.face].Embedding
	}

	var b strings.Builder
	b.WriteString("similarity matrix (rows and columns in the same order):\n")
	for i, id := range set {
		fmt.Fprintf(&b, "%2d %-36.36s", i, id.photo+suffix(id))
		for j := range set {
			fmt.Fprintf(&b, " %5.2f", Similarity(vecs[i], vecs[j]))
		}
		b.WriteString("\n")
	}
	t.Log(b.String())

	var same, diff []float64
	var worstSame, worstDiff string
	groups := map[string][]float64{}
	for i := range set {
		for j := i + 1; j < len(set); j++ {
			s := float64(Similarity(vecs[i], vecs[j]))
			pair := fmt.Sprintf("%s%s / %s%s %.3f", set[i].photo, suffix(set[i]), set[j].photo, suffix(set[j]), s)
			if set[i].person == set[j].person {
				if len(same) == 0 || s < slicesMin(same) {
					worstSame = pair
				}
				same = append(same, s)
				groups[set[i].person] = append(groups[set[i].person], s)
				if s < DefaultMatchThreshold {
					t.Errorf("same person below the match threshold %.2f: %s", DefaultMatchThreshold, pair)
				}
			} else {
				if len(diff) == 0 || s > slicesMax(diff) {
					worstDiff = pair
				}
				diff = append(diff, s)
				if s >= DefaultMatchThreshold {
					t.Errorf("different people above the match threshold %.2f: %s", DefaultMatchThreshold, pair)
				}
			}
		}
	}
	for _, person := range []string{"bieber", "cage", "connery", "franck"} {
		g := groups[person]
		t.Logf("same person %-8s %2d pairs: %.3f to %.3f", person, len(g), slicesMin(g), slicesMax(g))
	}
	sort.Float64s(same)
	sort.Float64s(diff)
	mean, sd := meanSD(diff)
	p99 := diff[int(math.Ceil(0.99*float64(len(diff))))-1]
	aboveSearch := 0
	for _, s := range diff {
		if s >= DefaultSearchThreshold {
			aboveSearch++
		}
	}
	sMean, _ := meanSD(same)
	t.Logf("same person: %d pairs, min %.3f, median %.3f, mean %.3f; lowest %s", len(same), same[0], same[len(same)/2], sMean, worstSame)
	t.Logf("different people: %d pairs, mean %.3f, sd %.3f, p99 %.3f, max %.3f; highest %s", len(diff), mean, sd, p99, diff[len(diff)-1], worstDiff)
	t.Logf("match threshold %.2f: margin %.3f above the highest different pair, %.3f below the lowest same pair (%.1f sd above the different-people mean)",
		DefaultMatchThreshold, DefaultMatchThreshold-diff[len(diff)-1], same[0]-DefaultMatchThreshold, (DefaultMatchThreshold-mean)/sd)
	t.Logf("search threshold %.2f: %d of %d different pairs at or above it", DefaultSearchThreshold, aboveSearch, len(diff))
	// Search may show a few strangers to a human, but not routinely.
	if p99 >= DefaultSearchThreshold {
		t.Errorf("99th percentile of different people %.3f reaches the search threshold %.2f", p99, DefaultSearchThreshold)
	}
}

func suffix(id identity) string {
	if id.face < 0 {
		return ""
	}
	return fmt.Sprintf("#%d", id.face)
}

func slicesMin(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func slicesMax(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

func meanSD(v []float64) (mean, sd float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)))
}

func TestDetectGroupPhoto(t *testing.T) {
	e := newEngine(t)
	img := decode(t, "faces.jpg")
	faces, err := e.Detect(img, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) != 3 {
		t.Fatalf("faces.jpg: %d faces, want 3: %+v", len(faces), faces)
	}
	for i, f := range faces {
		t.Logf("face %d: box %v score %.3f", i, f.Box, f.Score)
		if i > 0 && f.Score > faces[i-1].Score {
			t.Errorf("faces not sorted by score")
		}
		checkFace(t, f, img.Rect)
		for j := range i {
			if !f.Box.Intersect(faces[j].Box).Empty() {
				t.Errorf("faces %d and %d overlap: %v %v", i, j, f.Box, faces[j].Box)
			}
		}
	}
}

// checkFace checks the geometry of a plausible upright face.
func checkFace(t *testing.T, f Face, bounds image.Rectangle) {
	t.Helper()
	if !f.Box.In(bounds) || f.Box.Dx() < DefaultMinFaceSize || f.Box.Dy() < DefaultMinFaceSize {
		t.Errorf("box %v outside %v or too small", f.Box, bounds)
	}
	if !(f.Score >= DefaultScoreThreshold && f.Score <= 1) {
		t.Errorf("score %v", f.Score)
	}
	lm := f.Landmarks
	in := func(p Point) bool {
		return p.X >= float64(f.Box.Min.X) && p.X <= float64(f.Box.Max.X) && p.Y >= float64(f.Box.Min.Y) && p.Y <= float64(f.Box.Max.Y)
	}
	for i, p := range lm {
		if !in(p) {
			t.Errorf("landmark %d %v outside box %v", i, p, f.Box)
		}
	}
	if lm[LeftEye].X >= lm[RightEye].X || lm[MouthLeft].X >= lm[MouthRight].X {
		t.Errorf("left/right swapped: %v", lm)
	}
	eyes := math.Max(lm[LeftEye].Y, lm[RightEye].Y)
	mouth := math.Min(lm[MouthLeft].Y, lm[MouthRight].Y)
	if !(eyes < lm[Nose].Y && lm[Nose].Y < mouth) {
		t.Errorf("eyes, nose and mouth not in order from top to bottom: %v", lm)
	}
}

func TestDetectSinglePhotos(t *testing.T) {
	e := newEngine(t)
	for _, name := range []string{"cage.jpg", "SeanConnery.jpg", "franck_01829.jpg", "bieber_small.jpg", "queen20_crop.jpg"} {
		img := decode(t, name)
		faces, err := e.Detect(img, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(faces) != 1 {
			t.Fatalf("%s: %d faces, want 1", name, len(faces))
		}
		checkFace(t, faces[0], img.Rect)
	}
}

// Detection on a reduced decode finds the same faces, in full-resolution
// pixels, and embedding them from the full image gives the vectors Analyze
// gives.
func TestReducedScaleDetection(t *testing.T) {
	e := newEngine(t)
	w, h := e.DetectorSize()
	if w != 320 || h != 240 {
		t.Fatalf("detector size %dx%d, want 320x240 (read from the model)", w, h)
	}
	for _, name := range []string{"franck_01829.jpg", "faces.jpg", "bieber_small.jpg"} {
		data := testenv.ReadPhoto(t, name)
		full := decode(t, name)
		small, scale, err := imaging.DecodeForSize(data, imaging.Limits{}, w/2, h/2)
		if err != nil {
			t.Fatal(err)
		}
		if scale >= 1 {
			t.Fatalf("%s: scale %v, want a reduced decode", name, scale)
		}
		ref, err := e.Detect(full, 1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.Detect(small, scale)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ref) {
			t.Fatalf("%s at %v: %d faces, at full size %d", name, scale, len(got), len(ref))
		}
		for i := range got {
			checkFace(t, got[i], full.Rect)
			if o := boxFromRect(got[i].Box); iou(o, boxFromRect(ref[i].Box)) < 0.7 {
				t.Errorf("%s: box %v at scale %v, %v at full size", name, got[i].Box, scale, ref[i].Box)
			}
		}
		vecs, err := e.Embed(full, got)
		if err != nil {
			t.Fatal(err)
		}
		analyzed, err := e.Analyze(data)
		if err != nil {
			t.Fatal(err)
		}
		for i := range vecs {
			best := float32(0)
			for _, a := range analyzed {
				best = max(best, Similarity(vecs[i], a.Embedding))
			}
			t.Logf("%s face %d: landmarks from the 1/%.0f decode vs Analyze: similarity %.3f", name, i, 1/scale, best)
			if best < 0.95 {
				t.Errorf("%s face %d: similarity %.3f to Analyze's vector", name, i, best)
			}
		}
	}
}

// Embed works from bare boxes (another detector's) by finding landmarks.
func TestEmbedBoxOnly(t *testing.T) {
	e := newEngine(t)
	img := decode(t, "cage.jpg")
	faces, err := e.Detect(img, 1)
	if err != nil || len(faces) != 1 {
		t.Fatalf("%v %v", faces, err)
	}
	bare := Face{Box: faces[0].Box}
	vecs, err := e.Embed(img, []Face{faces[0], bare})
	if err != nil {
		t.Fatal(err)
	}
	if s := Similarity(vecs[0], vecs[1]); s < 0.99 {
		t.Fatalf("box-only embedding differs: %.3f", s)
	}
	if _, err := e.Embed(img, []Face{{Box: image.Rect(2000, 2000, 2100, 2100)}}); err == nil {
		t.Fatal("box outside the image embedded")
	}
	if vecs, err := e.Embed(img, nil); err != nil || len(vecs) != 0 {
		t.Fatalf("no faces: %v %v", vecs, err)
	}
}

func TestNoFace(t *testing.T) {
	e := newEngine(t)
	grey := image.NewRGBA(image.Rect(0, 0, 640, 480))
	gradient := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			grey.SetRGBA(x, y, color.RGBA{128, 128, 128, 255})
			gradient.SetRGBA(x, y, color.RGBA{uint8(x * 255 / 639), uint8(y * 255 / 479), 96, 255})
		}
	}
	// The bookshelf and wall above the heads in faces.jpg: a real
	// background with edges and texture.
	background, err := imaging.Crop(decode(t, "faces.jpg"), image.Rect(140, 0, 455, 115))
	if err != nil {
		t.Fatal(err)
	}
	for name, img := range map[string]*image.RGBA{"grey": grey, "gradient": gradient, "background": background} {
		faces, err := e.Detect(img, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(faces) != 0 {
			t.Errorf("%s: %d faces: %+v", name, len(faces), faces)
		}
		data, err := imaging.EncodeJPEG(img, 90)
		if err != nil {
			t.Fatal(err)
		}
		if faces, err := e.Analyze(data); err != nil || len(faces) != 0 {
			t.Errorf("%s: Analyze: %d faces, %v", name, len(faces), err)
		}
		if _, _, err := e.AnalyzeLargest(data); !errors.Is(err, ErrNoFace) {
			t.Errorf("%s: AnalyzeLargest: %v, want ErrNoFace", name, err)
		}
	}
}

func TestAnalyzeLargest(t *testing.T) {
	e := newEngine(t)
	faces, idx, err := e.AnalyzeLargest(testenv.ReadPhoto(t, "faces.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) != 3 {
		t.Fatalf("%d faces", len(faces))
	}
	for i, f := range faces {
		if area(f.Box) > area(faces[idx].Box) {
			t.Errorf("face %d %v is larger than the chosen %d %v", i, f.Box, idx, faces[idx].Box)
		}
		if (i == idx) != (f.Embedding != nil) {
			t.Errorf("face %d: embedding %v, chosen %d", i, f.Embedding != nil, idx)
		}
	}
	t.Logf("enrolled face %d of %d at %v", idx, len(faces), faces[idx].Box)
	// The same vector as Analyze gives for that face.
	all, err := e.Analyze(testenv.ReadPhoto(t, "faces.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if s := Similarity(all[idx].Embedding, faces[idx].Embedding); s < 0.9999 {
		t.Fatalf("AnalyzeLargest and Analyze disagree: %.5f", s)
	}
}

func TestModelInfo(t *testing.T) {
	e := newEngine(t)
	m := e.Model()
	if !regexp.MustCompile(`^fr_feature-[0-9a-f]{8}$`).MatchString(m.Name) || m.Dim != 512 {
		t.Fatalf("model %+v", m)
	}
	if !versionAtLeast(e.RuntimeVersion(), minORTVersion) {
		t.Fatalf("runtime version %q", e.RuntimeVersion())
	}
	t.Logf("model %+v, ONNX Runtime %s", m, e.RuntimeVersion())
	faces, err := e.Analyze(testenv.ReadPhoto(t, "cage2_crop.jpg"))
	if err != nil || len(faces) != 1 {
		t.Fatalf("%v %v", faces, err)
	}
	v := faces[0].Embedding
	if len(v) != m.Dim {
		t.Fatalf("embedding length %d, model says %d", len(v), m.Dim)
	}
	if n := Similarity(v, v); math.Abs(float64(n)-1) > 1e-5 {
		t.Fatalf("squared norm %v", n)
	}
}

// Several goroutines share one engine (run with -race): results are the
// ones a single caller gets.
func TestConcurrentUse(t *testing.T) {
	e := newEngine(t)
	photos := []string{"faces.jpg", "cage.jpg", "franck_02045.jpg", "obama4_crop.jpg"}
	want := map[string][]Face{}
	for _, p := range photos {
		faces, err := e.Analyze(testenv.ReadPhoto(t, p))
		if err != nil {
			t.Fatal(err)
		}
		want[p] = faces
	}
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Go(func() {
			for k := 0; k < 2; k++ {
				p := photos[(g+k)%len(photos)]
				faces, err := e.Analyze(testenv.ReadPhoto(t, p))
				if err != nil {
					t.Error(err)
					return
				}
				if len(faces) != len(want[p]) {
					t.Errorf("%s: %d faces, want %d", p, len(faces), len(want[p]))
					return
				}
				for i := range faces {
					if s := Similarity(faces[i].Embedding, want[p][i].Embedding); s < 0.9999 || faces[i].Box != want[p][i].Box {
						t.Errorf("%s face %d differs under concurrency: %v %.5f", p, i, faces[i].Box, s)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestBadInputs(t *testing.T) {
	e := newEngine(t)
	photo := testenv.ReadPhoto(t, "cage.jpg")
	big := make([]byte, 12<<20)
	copy(big, photo)
	var hugePNG bytes.Buffer
	if err := png.Encode(&hugePNG, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	header := hugePNG.Bytes()
	// Rewrite the IHDR size to 30000x30000; png.DecodeConfig checks the
	// CRC, so recompute it.
	header = withPNGSize(header, 30000, 30000)
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"zero bytes", nil, imaging.ErrEmpty},
		{"text", []byte("this is not an image\n"), imaging.ErrUnsupportedFormat},
		{"truncated jpeg", photo[:len(photo)/3], imaging.ErrCorrupt},
		{"png 30000x30000", header, imaging.ErrTooManyPixels},
		{"12 MB", big, imaging.ErrTooLarge},
	} {
		if _, err := e.Analyze(tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: Analyze: %v, want %v", tc.name, err, tc.want)
		}
		if _, _, err := e.AnalyzeLargest(tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: AnalyzeLargest: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := e.Detect(nil, 1); err == nil {
		t.Error("Detect(nil) succeeded")
	}
	if _, err := e.Detect(image.NewRGBA(image.Rect(0, 0, 10, 10)), 0); err == nil {
		t.Error("Detect at scale 0 succeeded")
	}
	if _, err := e.Embed(nil, []Face{{Box: image.Rect(0, 0, 10, 10)}}); err == nil {
		t.Error("Embed(nil) succeeded")
	}
	// Landmarks from a caller: absurd ones give an error or a vector, never
	// a panic.
	img := decode(t, "cage.jpg")
	for _, lm := range [][5]Point{
		{{math.NaN(), 1}, {2, 2}, {3, 3}, {4, 4}, {5, 5}},
		{{math.Inf(1), 1}, {2, 2}, {3, 3}, {4, 4}, {5, 5}},
		{{1e12, -1e12}, {-1e12, 1e12}, {3, 3}, {4, 4}, {5, 5}},
		{{7, 7}, {7, 7}, {7, 7}, {7, 7}, {7, 7}},
		{{1, 1}, {1 + 1e-9, 1}, {1, 1 + 1e-9}, {1, 1}, {1, 1}},
	} {
		vecs, err := e.Embed(img, []Face{{Box: image.Rect(100, 100, 300, 300), Landmarks: lm}})
		if err == nil && len(vecs[0]) != e.Model().Dim {
			t.Errorf("landmarks %v: %d values", lm, len(vecs[0]))
		}
	}
	// Tiny and odd-sized images are fine, just faceless.
	for _, r := range []image.Rectangle{image.Rect(0, 0, 1, 1), image.Rect(0, 0, 3000, 2), image.Rect(5, 7, 40, 900)} {
		if faces, err := e.Detect(image.NewRGBA(r), 1); err != nil || len(faces) != 0 {
			t.Errorf("%v: %v %v", r, faces, err)
		}
	}
}

func withPNGSize(p []byte, w, h uint32) []byte {
	out := append([]byte{}, p...)
	// Signature (8), length (4), "IHDR" (4), then width and height.
	put := func(off int, v uint32) {
		out[off], out[off+1], out[off+2], out[off+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	put(16, w)
	put(20, h)
	put(29, crc32.ChecksumIEEE(out[12:29]))
	return out
}

func TestClosedEngine(t *testing.T) {
	e, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	img := decode(t, "cage.jpg")
	if _, err := e.Detect(img, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Detect: %v", err)
	}
	if _, err := e.Embed(img, []Face{{Box: image.Rect(0, 0, 100, 100)}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Embed: %v", err)
	}
	if _, err := e.Analyze(testenv.ReadPhoto(t, "cage.jpg")); !errors.Is(err, ErrClosed) {
		t.Errorf("Analyze: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	good := testConfig(t)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, mutate := range map[string]func(*Config){
		"ModelDir":       func(c *Config) { c.ModelDir = "" },
		"LibraryPath":    func(c *Config) { c.LibraryPath = "" },
		"IntraOpThreads": func(c *Config) { c.IntraOpThreads = 0 },
		"Parallelism":    func(c *Config) { c.Parallelism = -1 },
		"ScoreThreshold": func(c *Config) { c.ScoreThreshold = 1.5 },
		"NMSIoU":         func(c *Config) { c.NMSIoU = 0 },
		"MinFaceSize":    func(c *Config) { c.MinFaceSize = -3 },
		"Limits":         func(c *Config) { c.Limits.MaxBytes = -1 },
	} {
		c := good
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("New with bad %s: %v", field, err)
		}
	}

	// A missing model folder names the file it looked for.
	c := good
	c.ModelDir = filepath.Join(t.TempDir(), "nowhere")
	_, err := New(c)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(c.ModelDir, "fr_detect.onnx")) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing model dir: %v", err)
	}
	// A file that is not a model.
	c.ModelDir = t.TempDir()
	for _, m := range []string{"fr_detect", "fr_landmark", "fr_feature"} {
		if err := os.WriteFile(filepath.Join(c.ModelDir, m+".onnx"), []byte("not a model"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "fr_detect.onnx") {
		t.Errorf("garbage model: %v", err)
	}
	// A missing library.
	c = good
	c.LibraryPath = filepath.Join(t.TempDir(), "libonnxruntime.so")
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), c.LibraryPath) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing library: %v", err)
	}
	// Another library than the one this process already runs.
	newEngine(t)
	c.LibraryPath = filepath.Join(t.TempDir(), "libother.so")
	if err := os.WriteFile(c.LibraryPath, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "already runs ONNX Runtime from") {
		t.Errorf("second library: %v", err)
	}
}

// A file that is not ONNX Runtime, in a fresh process (the environment of
// this one is already initialised by other tests).
func TestLibraryNotORT(t *testing.T) {
	if lib := os.Getenv("POI_FACE_TEST_LIBRARY"); lib != "" {
		c := testConfig(t)
		c.LibraryPath = lib
		_, err := New(c)
		fmt.Printf("NEW-ERROR: %v\n", err)
		return
	}
	lib := filepath.Join(t.TempDir(), "libonnxruntime.so")
	if err := os.WriteFile(lib, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLibraryNotORT$", "-test.v")
	cmd.Env = append(os.Environ(), "POI_FACE_TEST_LIBRARY="+lib)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`NEW-ERROR: .*`).Find(out)
	t.Logf("%s", line)
	if !bytes.Contains(line, []byte("onnx runtime library "+lib)) {
		t.Fatalf("error does not name the library: %s", out)
	}
}

func TestVersionCheck(t *testing.T) {
	for v, ok := range map[string]bool{"1.24.1": true, "1.24.0": true, "1.30.0": true, "2.0.0": true,
		"1.23.2": false, "1.9.0": false, "": false, "garbage": false} {
		if versionAtLeast(v, minORTVersion) != ok {
			t.Errorf("%q: want %v", v, ok)
		}
	}
	if err := checkVersion("1.20.0", "/lib/x.so"); err == nil || !strings.Contains(err.Error(), `"1.20.0"`) || !strings.Contains(err.Error(), "1.24") {
		t.Errorf("old version: %v", err)
	}
}

func TestLargest(t *testing.T) {
	if _, err := Largest(nil); !errors.Is(err, ErrNoFace) {
		t.Fatalf("empty: %v", err)
	}
	faces := []Face{
		{Box: image.Rect(0, 0, 10, 10), Score: 0.99},
		{Box: image.Rect(0, 0, 20, 20), Score: 0.8},
		{Box: image.Rect(50, 50, 70, 70), Score: 0.9},
	}
	if i, err := Largest(faces); err != nil || i != 2 {
		t.Fatalf("got %d %v, want 2 (largest, then most confident)", i, err)
	}
}

func TestFaceScale(t *testing.T) {
	f := Face{Box: image.Rect(10, 20, 30, 40), Landmarks: [5]Point{{12, 22}, {28, 22}, {20, 30}, {14, 36}, {26, 36}}}
	g := f.Scale(4)
	if g.Box != image.Rect(40, 80, 120, 160) || g.Landmarks[Nose] != (Point{80, 120}) {
		t.Fatalf("%+v", g)
	}
	if h := (Face{Box: image.Rect(1, 1, 3, 3)}).Scale(2); h.HasLandmarks() {
		t.Fatalf("unknown landmarks became known: %+v", h)
	}
}

func TestNMS(t *testing.T) {
	d := []detection{
		{0, 0, 10, 10, 0.8},
		{1, 1, 11, 11, 0.9},  // IoU with the first 0.68: suppresses it
		{5, 0, 15, 10, 0.85}, // IoU with the second 0.37 > 0.3: suppressed
		{20, 20, 30, 30, 0.75},
	}
	got := nms(d, 0.3)
	if len(got) != 2 || got[0].score != 0.9 || got[1].score != 0.75 {
		t.Fatalf("%+v", got)
	}
	if got := nms(d, 0.7); len(got) != 4 {
		t.Fatalf("at 0.7: %+v", got)
	}
}

func TestSimilarityTransform(t *testing.T) {
	// Points rotated by 30 degrees, scaled by 1.7 and moved: recovered
	// exactly, and the inverse undoes it.
	th, s := math.Pi/6, 1.7
	want := affine{m00: s * math.Cos(th), m01: -s * math.Sin(th), tx: 5, m10: s * math.Sin(th), m11: s * math.Cos(th), ty: -3}
	src := arcFaceTemplate[:]
	dst := make([]Point, len(src))
	for i, p := range src {
		dst[i].X, dst[i].Y = want.apply(p.X, p.Y)
	}
	got := similarity(src, dst)
	for _, d := range []float64{got.m00 - want.m00, got.m01 - want.m01, got.tx - want.tx, got.m10 - want.m10, got.m11 - want.m11, got.ty - want.ty} {
		if math.Abs(d) > 1e-9 {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if math.Abs(got.scale()-s) > 1e-9 {
		t.Fatalf("scale %v", got.scale())
	}
	x, y := got.invert().apply(dst[2].X, dst[2].Y)
	if math.Abs(x-src[2].X) > 1e-9 || math.Abs(y-src[2].Y) > 1e-9 {
		t.Fatalf("inverse: %v %v", x, y)
	}
}

// shrink averages exact blocks, partial ones at the right and bottom edges.
func TestShrink(t *testing.T) {
	img := decode(t, "franck_01829.jpg")
	for _, f := range []int{2, 3, 5} {
		for _, r := range []image.Rectangle{image.Rect(10, 20, 301, 250), image.Rect(0, 0, 720, 576), image.Rect(101, 3, 104, 9)} {
			got := shrink(img, r, f)
			for j := 0; j < got.Rect.Dy(); j++ {
				for i := 0; i < got.Rect.Dx(); i++ {
					var s [3]int
					n := 0
					for y := r.Min.Y + j*f; y < min(r.Min.Y+(j+1)*f, r.Max.Y); y++ {
						for x := r.Min.X + i*f; x < min(r.Min.X+(i+1)*f, r.Max.X); x++ {
							c := img.RGBAAt(x, y)
							s[0] += int(c.R)
							s[1] += int(c.G)
							s[2] += int(c.B)
							n++
						}
					}
					c := got.RGBAAt(i, j)
					if int(c.R) != (s[0]+n/2)/n || int(c.G) != (s[1]+n/2)/n || int(c.B) != (s[2]+n/2)/n {
						t.Fatalf("f %d r %v at %d,%d: %v vs %v/%d", f, r, i, j, c, s, n)
					}
				}
			}
		}
	}
}

// A face shifted by a fraction of a pixel or scaled by a few percent (what
// happens between video frames) must keep its vector. Averaging large faces
// down before sampling is what makes this hold: with bilinear sampling alone
// the worst case fell from 0.968 to 0.924 on the calibration photos.
func TestEmbeddingStability(t *testing.T) {
	e := newEngine(t)
	worst, sum, n := 1.0, 0.0, 0
	var worstPhoto string
	for _, id := range calibrationSet() {
		if id.face >= 0 {
			continue
		}
		photo := id.photo
		img := decode(t, photo)
		faces, err := e.Detect(img, 1)
		if err != nil || len(faces) != 1 {
			t.Fatalf("%s: %v %v", photo, faces, err)
		}
		f := faces[0]
		variants := []Face{f}
		cx, cy := (f.Landmarks[LeftEye].X+f.Landmarks[RightEye].X)/2, (f.Landmarks[LeftEye].Y+f.Landmarks[RightEye].Y)/2
		for _, d := range [][3]float64{{0.37, 0.61, 1}, {-0.5, 0.25, 1.02}, {0.8, -0.3, 0.98}, {0, 0, 1.04}} {
			g := f
			for i, p := range f.Landmarks {
				g.Landmarks[i] = Point{cx + (p.X-cx)*d[2] + d[0], cy + (p.Y-cy)*d[2] + d[1]}
			}
			variants = append(variants, g)
		}
		vecs, err := e.Embed(img, variants)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vecs[1:] {
			s := float64(Similarity(vecs[0], v))
			if s < worst {
				worst, worstPhoto = s, photo
			}
			sum, n = sum+s, n+1
		}
	}
	t.Logf("self-similarity under sub-pixel shifts and 2-4%% scaling, %d pairs: mean %.3f, worst %.3f (%s)", n, sum/float64(n), worst, worstPhoto)
	if worst < 0.95 {
		t.Errorf("worst self-similarity %.3f", worst)
	}
}
