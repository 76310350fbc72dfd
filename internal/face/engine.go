// Package face finds faces in images and turns them into identity vectors,
// with ONNX Runtime and three small models: a detector (UltraFace RFB-320), a
// 68-point landmark network and a MobileFaceNet-style embedder.
//
// Enrollment photos, search queries and camera frames all go through the
// same path (detect, landmarks, 5-point similarity alignment onto the
// ArcFace template, embed, L2-normalise), so every vector lives in one
// embedding space, identified by Engine.Model. Alignment is what makes the
// vectors comparable: with plain box crops, the same person scored 0.07-0.13
// and different people up to 0.6.
package face

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"poi/internal/imaging"
)

// Thresholds on the cosine similarity of two embeddings of fr_feature.onnx
// (sha256 87aacdfe...), calibrated by TestSimilarityMatrix on the photos of
// RESEARCH.md §3; see docs/bench-face-engine.md for the evidence. Another model
// needs its own calibration.
const (
	// DefaultMatchThreshold decides that two faces are the same person
	// (alerts, enrollment checks): this model's equivalent of the upstream
	// service's 0.6.
	DefaultMatchThreshold = 0.40
	// DefaultSearchThreshold is the lower bar for "where was this face
	// seen": search returns ranked candidates for a human to confirm, so it
	// trades precision for recall.
	DefaultSearchThreshold = 0.30
)

// Errors.
var (
	// ErrNoFace: the image holds no face the detector is confident about.
	ErrNoFace = errors.New("no face found")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("face engine is closed")
)

// Landmark indices in Face.Landmarks.
const (
	LeftEye    = iota // eye on the left of the image (the person's right)
	RightEye          // eye on the right of the image
	Nose              // nose tip
	MouthLeft         // mouth corner on the left of the image
	MouthRight        // mouth corner on the right of the image
)

// Face is one detected face.
type Face struct {
	// Box is the face in the pixels of the full-resolution image, clamped to
	// the image.
	Box image.Rectangle
	// Score is the detector's confidence, in (0, 1).
	Score float32
	// Landmarks are the five alignment points (see LeftEye...), in the same
	// pixels as Box; all zero when unknown, and then Embed finds them.
	Landmarks [5]Point
	// Embedding is the L2-normalised identity vector, set only by Analyze
	// and AnalyzeLargest.
	Embedding []float32
}

// HasLandmarks reports whether the landmarks are known.
func (f Face) HasLandmarks() bool { return f.Landmarks != [5]Point{} }

// Scale returns f with box and landmarks multiplied by k, for example to map
// faces found in a reduced image back to full resolution (k = 1/scale).
func (f Face) Scale(k float64) Face {
	f.Box = image.Rect(
		int(math.Round(float64(f.Box.Min.X)*k)), int(math.Round(float64(f.Box.Min.Y)*k)),
		int(math.Round(float64(f.Box.Max.X)*k)), int(math.Round(float64(f.Box.Max.Y)*k)))
	if f.HasLandmarks() {
		for i := range f.Landmarks {
			f.Landmarks[i] = Point{f.Landmarks[i].X * k, f.Landmarks[i].Y * k}
		}
	}
	return f
}

// ModelInfo identifies the embedding space: vectors with different Name or
// Dim must never be compared.
type ModelInfo struct {
	// Name is the model file's base name and the start of its sha256, for
	// example "fr_feature-87aacdfe".
	Name string
	// Dim is the length of every embedding, read from the model.
	Dim int
}

// Engine runs the face models. It is safe for concurrent use; Close it when
// done.
type Engine struct {
	cfg     Config
	version string
	info    ModelInfo

	// mu is held shared by every call and exclusively by Close, so that
	// Close waits for the calls in flight and no call starts on freed
	// sessions.
	mu     sync.RWMutex
	closed bool

	detect   *model
	landmark *model
	embed    *model

	// Read from the models by checkShapes.
	detW, detH int // detector input size
	nAnchors   int
	scoresOut  int // index of the scores output of the detector
	boxesOut   int
	lmSize     int // landmark input is lmSize x lmSize grey
	embSize    int // embedder input is embSize x embSize RGB
}

// New loads ONNX Runtime (once per process) and the three models.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	version, err := initORT(cfg.LibraryPath)
	if err != nil {
		return nil, fmt.Errorf("face engine: %w", err)
	}
	e := &Engine{cfg: cfg, version: version}
	if err := e.load(); err != nil {
		e.destroy()
		return nil, fmt.Errorf("face engine: %w", err)
	}
	return e, nil
}

func (e *Engine) load() error {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return fmt.Errorf("session options: %w", err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(e.cfg.IntraOpThreads); err != nil {
		return fmt.Errorf("session options: intra-op threads: %w", err)
	}
	// Inter-op parallelism only helps graphs with parallel branches; these
	// are chains.
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return fmt.Errorf("session options: inter-op threads: %w", err)
	}

	load := func(name string) (*model, []byte, error) {
		path := filepath.Join(e.cfg.ModelDir, name+".onnx")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("model: %w (set ModelDir to the folder holding fr_detect.onnx, fr_landmark.onnx and fr_feature.onnx)", err)
		}
		m, err := loadModel(path, data, opts, e.cfg.Parallelism)
		return m, data, err
	}
	if e.detect, _, err = load("fr_detect"); err != nil {
		return err
	}
	if e.landmark, _, err = load("fr_landmark"); err != nil {
		return err
	}
	var embData []byte
	if e.embed, embData, err = load("fr_feature"); err != nil {
		return err
	}
	if err := e.checkShapes(); err != nil {
		return err
	}
	sum := sha256.Sum256(embData)
	e.info.Name = "fr_feature-" + hex.EncodeToString(sum[:4])
	return nil
}

// checkShapes reads the sizes the code depends on from the models and
// rejects models that do not fit the pre- and post-processing.
func (e *Engine) checkShapes() error {
	in := e.detect.in.Dimensions
	if len(in) != 4 || in[0] != 1 || in[1] != 3 || len(e.detect.outs) != 2 {
		return fmt.Errorf("%s: want input [1 3 H W] and outputs scores and boxes, got %s", e.detect.name, describe(e.detect))
	}
	e.detH, e.detW = int(in[2]), int(in[3])
	e.scoresOut, e.boxesOut = -1, -1
	for i, o := range e.detect.outs {
		d := o.Dimensions
		if len(d) != 3 || d[0] != 1 {
			continue
		}
		switch d[2] {
		case 2:
			e.scoresOut = i
		case 4:
			e.boxesOut = i
		}
	}
	if e.scoresOut < 0 || e.boxesOut < 0 ||
		e.detect.outs[e.scoresOut].Dimensions[1] != e.detect.outs[e.boxesOut].Dimensions[1] {
		return fmt.Errorf("%s: want outputs [1 N 2] scores and [1 N 4] boxes, got %s", e.detect.name, describe(e.detect))
	}
	e.nAnchors = int(e.detect.outs[e.boxesOut].Dimensions[1])

	in = e.landmark.in.Dimensions
	if len(in) != 4 || in[0] != 1 || in[1] != 1 || in[2] != in[3] || len(e.landmark.outs) != 1 ||
		e.landmark.outs[0].Dimensions.FlattenedSize() != 2*68 {
		return fmt.Errorf("%s: want input [1 1 S S] and 68 points out, got %s", e.landmark.name, describe(e.landmark))
	}
	e.lmSize = int(in[2])

	in = e.embed.in.Dimensions
	out := e.embed.outs[0].Dimensions
	if len(in) != 4 || in[0] != 1 || in[1] != 3 || in[2] != in[3] || len(e.embed.outs) != 1 || len(out) != 2 || out[0] != 1 {
		return fmt.Errorf("%s: want input [1 3 S S] and output [1 D], got %s", e.embed.name, describe(e.embed))
	}
	e.embSize = int(in[2])
	e.info.Dim = int(out[1])
	return nil
}

func describe(m *model) string {
	parts := []string{"input " + m.in.String()}
	for _, o := range m.outs {
		parts = append(parts, "output "+o.String())
	}
	return strings.Join(parts, ", ")
}

// Close frees the sessions after the calls in flight have finished. Later
// calls fail with ErrClosed. The process-wide ONNX Runtime stays loaded.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		e.destroy()
	}
	return nil
}

func (e *Engine) destroy() {
	for _, m := range []*model{e.detect, e.landmark, e.embed} {
		if m != nil {
			m.destroy()
		}
	}
}

// Model identifies the embedding space of this engine's vectors.
func (e *Engine) Model() ModelInfo { return e.info }

// RuntimeVersion is the version of the loaded ONNX Runtime library.
func (e *Engine) RuntimeVersion() string { return e.version }

// DetectorSize is the detector's input size (320x240): decoding an image
// with imaging.DecodeForSize(data, lim, w, h) gives Detect all it can use.
func (e *Engine) DetectorSize() (w, h int) { return e.detW, e.detH }

func (e *Engine) begin() error {
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (e *Engine) end() { e.mu.RUnlock() }

// Detect finds the faces in img, most confident first, with their landmarks.
// img may be a reduced-scale decode (imaging.DecodeForSize): scale is the
// factor it was decoded at (1 for full resolution), and boxes and landmarks
// come back in full-resolution pixels, where Config.MinFaceSize applies.
// Cheap enough for every frame (about 2 ms plus 0.4 ms per face).
func (e *Engine) Detect(img *image.RGBA, scale float64) ([]Face, error) {
	if err := checkImage(img, scale); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	if err := e.begin(); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	defer e.end()
	boxes, err := e.detectBoxes(img, scale)
	if err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	r := img.Rect
	bounds := image.Rect(int(math.Round(float64(r.Min.X)/scale)), int(math.Round(float64(r.Min.Y)/scale)),
		int(math.Round(float64(r.Max.X)/scale)), int(math.Round(float64(r.Max.Y)/scale)))
	faces := make([]Face, len(boxes))
	for i, b := range boxes {
		lm, err := e.landmarks(img, b)
		if err != nil {
			return nil, fmt.Errorf("detect: %w", err)
		}
		faces[i] = b.scaled(1 / scale).face(bounds)
		for k := range lm {
			faces[i].Landmarks[k] = Point{lm[k].X / scale, lm[k].Y / scale}
		}
	}
	return faces, nil
}

func checkImage(img *image.RGBA, scale float64) error {
	if img == nil || img.Rect.Empty() {
		return errors.New("empty image")
	}
	if !(scale >= 1.0/1024 && scale <= 1024) {
		return fmt.Errorf("scale %v, want a decoding factor such as 1, 0.5 or 0.25", scale)
	}
	return nil
}

// Embed returns the L2-normalised embedding of each face of img (in the
// order of faces), with Model().Dim values each. img must be the image the
// boxes and landmarks refer to, ideally at full resolution: the crops come
// from it. Faces without landmarks (boxes from another detector) get them
// here. Expensive (tens of milliseconds per face); the faces of one call
// run in parallel up to Config.Parallelism.
func (e *Engine) Embed(img *image.RGBA, faces []Face) ([][]float32, error) {
	if err := checkImage(img, 1); err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	if err := e.begin(); err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	defer e.end()
	vecs := make([][]float32, len(faces))
	errs := make([]error, len(faces))
	e.parallel(len(faces), func(i int) { vecs[i], errs[i] = e.embedOne(img, faces[i]) })
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("embed: face %d at %v: %w", i, faces[i].Box, err)
		}
	}
	return vecs, nil
}

// parallel calls work(0..n-1) on up to Config.Parallelism goroutines; on the
// caller's alone when that is one or n is one, which spares the hand-over
// to another thread.
func (e *Engine) parallel(n int, work func(i int)) {
	workers := min(n, e.cfg.Parallelism)
	if workers <= 1 {
		for i := range n {
			work(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				work(i)
			}
		})
	}
	wg.Wait()
}

func (e *Engine) embedOne(img *image.RGBA, f Face) ([]float32, error) {
	if f.Box.Canon().Intersect(img.Rect).Empty() {
		return nil, fmt.Errorf("box outside the image %v", img.Rect)
	}
	lm := f.Landmarks
	for _, p := range lm {
		if math.IsNaN(p.X) || math.IsNaN(p.Y) || math.IsInf(p.X, 0) || math.IsInf(p.Y, 0) {
			return nil, fmt.Errorf("landmarks %v are not finite", lm)
		}
	}
	if !f.HasLandmarks() {
		var err error
		if lm, err = e.landmarks(img, boxFromRect(f.Box.Canon())); err != nil {
			return nil, err
		}
	}
	inv := alignment(lm, e.embSize)
	vec := make([]float32, e.info.Dim)
	err := e.embed.run(
		func(in []float32) { warpCHW(img, inv, e.embSize, in) },
		func(outs [][]float32) { copy(vec, outs[0]) })
	if err != nil {
		return nil, err
	}
	if !normalize(vec) {
		return nil, errors.New("embedder returned a zero or non-finite vector")
	}
	return vec, nil
}

// normalize scales v to unit length; false if it cannot.
func normalize(v []float32) bool {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if !(ss > 0) || math.IsInf(ss, 0) {
		return false
	}
	inv := float32(1 / math.Sqrt(ss))
	for i := range v {
		v[i] *= inv
	}
	return true
}

// Similarity is the cosine similarity of two embeddings from the same model
// (their dot product, as they are normalised); 0 if their lengths differ.
func Similarity(a, b []float32) float32 {
	if len(a) != len(b) {
		return 0
	}
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// Largest returns the index of the largest face (by box area; the most
// confident on a tie), the one to enroll from a photo, or ErrNoFace.
func Largest(faces []Face) (int, error) {
	best := -1
	for i, f := range faces {
		if best < 0 {
			best = i
			continue
		}
		a, b := area(f.Box), area(faces[best].Box)
		if a > b || (a == b && f.Score > faces[best].Score) {
			best = i
		}
	}
	if best < 0 {
		return -1, ErrNoFace
	}
	return best, nil
}

func area(r image.Rectangle) int { return r.Dx() * r.Dy() }

// Analyze decodes an encoded image (JPEG, PNG or WebP, within
// Config.Limits), detects every face on a reduced-scale decode, and embeds
// each from the full-resolution image. Boxes are in full-resolution pixels.
// No face is an empty result, not an error. Decoding errors wrap the
// imaging errors (imaging.ErrCorrupt, ...).
func (e *Engine) Analyze(data []byte) ([]Face, error) {
	faces, err := e.analyze(data, false)
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	return faces, nil
}

// AnalyzeLargest is Analyze for enrollment: it embeds only the largest face
// and returns every detected face with the index of the one embedded, so the
// caller can say which face of a group photo was used. It fails with
// ErrNoFace when there is none.
func (e *Engine) AnalyzeLargest(data []byte) (faces []Face, index int, err error) {
	faces, err = e.analyze(data, true)
	if err != nil {
		return nil, -1, fmt.Errorf("analyze: %w", err)
	}
	index, err = Largest(faces)
	if err != nil {
		return nil, -1, fmt.Errorf("analyze: %w", err)
	}
	return faces, index, nil
}

func (e *Engine) analyze(data []byte, largestOnly bool) ([]Face, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.end()
	small, scale, err := imaging.DecodeForSize(data, e.cfg.Limits, e.detW, e.detH)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	boxes, err := e.detectBoxes(small, scale)
	if err != nil || len(boxes) == 0 {
		return nil, err
	}
	full := small
	if scale != 1 {
		if full, err = imaging.Decode(data, e.cfg.Limits); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
	}
	faces := make([]Face, len(boxes))
	for i := range boxes {
		boxes[i] = boxes[i].scaled(1 / scale)
		faces[i] = boxes[i].face(full.Rect)
	}
	todo := make([]int, 0, len(faces))
	if largestOnly {
		i, _ := Largest(faces)
		todo = append(todo, i)
	} else {
		for i := range faces {
			todo = append(todo, i)
		}
	}
	// Landmarks on the full-resolution image: on the reduced one a face of
	// 100 pixels would be located to within 4 pixels at best.
	errs := make([]error, len(faces))
	e.parallel(len(todo), func(k int) {
		i := todo[k]
		lm, err := e.landmarks(full, boxes[i])
		if err != nil {
			errs[i] = err
			return
		}
		faces[i].Landmarks = lm
		faces[i].Embedding, errs[i] = e.embedOne(full, faces[i])
	})
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("face %d at %v: %w", i, faces[i].Box, err)
		}
	}
	return faces, nil
}
