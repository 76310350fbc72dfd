package face

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"os"
	"syscall"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"poi/internal/imaging"
	"poi/internal/testenv"
)

// Benchmarks behind docs/bench-face-engine.md:
//
//	go test -run '^$' -bench . -benchtime 2s -count 5 ./internal/face/
//
// Every engine stage is measured next to the bare ONNX Runtime calls that
// it cannot avoid (same models, same session options, pre-filled input
// tensors, nothing else), so that engine/bare is the engine's overhead.

// benchPhoto is an encoded photo and what the engine finds in it.
type benchPhoto struct {
	name  string
	data  []byte
	full  *image.RGBA // full resolution
	small *image.RGBA // decoded for the detector
	scale float64
	faces []Face // with landmarks, full-resolution pixels
}

func benchPhotos(b *testing.B, e *Engine) []*benchPhoto {
	b.Helper()
	photos := []*benchPhoto{
		{name: "1face-720x576", data: testenv.ReadPhoto(b, "franck_01829.jpg")},
		{name: "3faces-600x346", data: testenv.ReadPhoto(b, "faces.jpg")},
		{name: "6faces-1920x1280", data: mosaic(b)},
	}
	if os.Getenv("POI_BENCH_SMOKE") == "1" {
		// scripts/test.sh only proves every benchmark still runs; the
		// largest photo would double its cost.
		photos = photos[:2]
	}
	w, h := e.DetectorSize()
	for _, p := range photos {
		var err error
		if p.full, err = imaging.Decode(p.data, imaging.Limits{}); err != nil {
			b.Fatal(err)
		}
		if p.small, p.scale, err = imaging.DecodeForSize(p.data, imaging.Limits{}, w, h); err != nil {
			b.Fatal(err)
		}
		if p.faces, err = e.Detect(p.full, 1); err != nil {
			b.Fatal(err)
		}
	}
	return photos
}

// mosaic is a 1920x1280 JPEG (quality 90) of six single-face photos pasted
// at their own resolution on grey: the assets have no large or five-face
// photo, and upscaling a small one would make an unrealistically smooth
// JPEG.
func mosaic(tb testing.TB) []byte {
	tb.Helper()
	canvas := image.NewRGBA(image.Rect(0, 0, 1920, 1280))
	draw.Draw(canvas, canvas.Rect, image.NewUniform(color.RGBA{110, 110, 110, 255}), image.Point{}, draw.Src)
	names := []string{"bieber_small.jpg", "cage.jpg", "SeanConnery.jpg", "franck_01829.jpg", "obama4_crop.jpg", "chuck_crop.jpg"}
	for i, n := range names {
		img, err := imaging.Decode(testenv.ReadPhoto(tb, n), imaging.Limits{})
		if err != nil {
			tb.Fatal(err)
		}
		cell := image.Rect(640*(i%3), 640*(i/3), 640*(i%3+1), 640*(i/3+1))
		// Centre the photo in its cell, cropping what overflows.
		off := image.Pt((cell.Dx()-img.Rect.Dx())/2, (cell.Dy()-img.Rect.Dy())/2)
		r := img.Rect.Add(cell.Min).Add(off).Intersect(cell)
		draw.Draw(canvas, r, img, r.Min.Sub(cell.Min).Sub(off), draw.Src)
	}
	data, err := imaging.EncodeJPEG(canvas, 90)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func benchEngine(b *testing.B, intra, parallel int) *Engine {
	b.Helper()
	cfg := testConfig(b)
	cfg.IntraOpThreads = intra
	cfg.Parallelism = parallel
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	return e
}

// bareSession is one model with its tensors bound once: the least any caller
// of ONNX Runtime must pay per inference.
type bareSession struct {
	s  *ort.AdvancedSession
	in *ort.Tensor[float32]
}

func newBare(b *testing.B, e *Engine, m *model) *bareSession {
	b.Helper()
	opts, err := ort.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(e.cfg.IntraOpThreads); err != nil {
		b.Fatal(err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		b.Fatal(err)
	}
	in, err := ort.NewEmptyTensor[float32](m.in.Dimensions)
	if err != nil {
		b.Fatal(err)
	}
	var outs []ort.Value
	var names []string
	for _, o := range m.outs {
		out, err := ort.NewEmptyTensor[float32](o.Dimensions)
		if err != nil {
			b.Fatal(err)
		}
		outs = append(outs, out)
		names = append(names, o.Name)
	}
	s, err := ort.NewAdvancedSession(m.name, []string{m.in.Name}, names, []ort.Value{in}, outs, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = s.Destroy()
		_ = in.Destroy()
		for _, o := range outs {
			_ = o.Destroy()
		}
	})
	return &bareSession{s, in}
}

// copyInput takes the input the engine last gave m (Parallelism 1: one
// tensor set), so that the bare run computes on a real face, not zeros.
func (s *bareSession) copyInput(m *model) {
	t := <-m.pool
	copy(s.in.GetData(), t.in.GetData())
	m.pool <- t
}

func (s *bareSession) run(b *testing.B) {
	if err := s.s.Run(); err != nil {
		b.Fatal(err)
	}
}

func reportFaces(b *testing.B, n int) {
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "faces/s")
}

// cpuTime is the CPU time of the process so far. The machine is shared: CPU
// time per operation is much less disturbed by other processes than wall
// time, so serial benchmarks report both (as cpu-ms/op).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs op in a b.Loop and reports CPU time per operation and, when
// faces > 0, faces per second of wall time.
func measure(b *testing.B, faces int, op func() error) {
	c0 := cpuTime()
	for b.Loop() {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/1e6/float64(b.N), "cpu-ms/op")
	if faces > 0 {
		reportFaces(b, faces)
	}
}

// BenchmarkEngine compares each stage with the bare model runs it contains,
// on one engine with the default one thread per run; Parallelism 1 keeps the
// engine's Embed serial like the bare loop (BenchmarkEmbedParallel shows the
// parallel gain).
func BenchmarkEngine(b *testing.B) {
	e := benchEngine(b, 1, 1)
	photos := benchPhotos(b, e)
	det, lmk, emb := newBare(b, e, e.detect), newBare(b, e, e.landmark), newBare(b, e, e.embed)
	for _, p := range photos {
		n := len(p.faces)
		// Real inputs for the bare runs: this photo, its first face.
		if _, err := e.Embed(p.full, p.faces[:1]); err != nil {
			b.Fatal(err)
		}
		if _, err := e.Detect(p.small, p.scale); err != nil {
			b.Fatal(err)
		}
		det.copyInput(e.detect)
		lmk.copyInput(e.landmark)
		emb.copyInput(e.embed)
		b.Run(p.name+"/detect", func(b *testing.B) {
			measure(b, n, func() error { _, err := e.Detect(p.small, p.scale); return err })
		})
		b.Run(p.name+"/detect-bare", func(b *testing.B) {
			measure(b, n, func() error {
				det.run(b)
				for range n {
					lmk.run(b)
				}
				return nil
			})
		})
		b.Run(p.name+"/align", func(b *testing.B) {
			buf := make([]float32, 3*e.embSize*e.embSize)
			measure(b, n, func() error {
				for _, f := range p.faces {
					alignInto(e, p.full, f.Landmarks, buf)
				}
				return nil
			})
		})
		b.Run(p.name+"/embed", func(b *testing.B) {
			measure(b, n, func() error { _, err := e.Embed(p.full, p.faces); return err })
		})
		b.Run(p.name+"/embed-bare", func(b *testing.B) {
			measure(b, n, func() error {
				for range n {
					emb.run(b)
				}
				return nil
			})
		})
		b.Run(p.name+"/analyze", func(b *testing.B) {
			measure(b, n, func() error {
				faces, err := e.Analyze(p.data)
				if err == nil && len(faces) != n {
					err = fmt.Errorf("%d faces, want %d", len(faces), n)
				}
				return err
			})
		})
		b.Run(p.name+"/analyze-bare", func(b *testing.B) {
			measure(b, n, func() error {
				det.run(b)
				for range n {
					lmk.run(b)
					emb.run(b)
				}
				return nil
			})
		})
	}
}

func alignInto(e *Engine, img *image.RGBA, lm [5]Point, dst []float32) {
	warpCHW(img, alignment(lm, e.embSize), e.embSize, dst)
}

// BenchmarkEmbedParallel: the faces of one photo embedded serially, in
// parallel (Parallelism 2, one thread per run), and serially with two
// threads per run.
func BenchmarkEmbedParallel(b *testing.B) {
	for _, c := range []struct{ intra, parallel int }{{1, 1}, {1, 2}, {2, 1}} {
		e := benchEngine(b, c.intra, c.parallel)
		photos := benchPhotos(b, e)
		for _, p := range photos[1:] {
			b.Run(fmt.Sprintf("%s/intra%d-parallel%d", p.name, c.intra, c.parallel), func(b *testing.B) {
				measure(b, len(p.faces), func() error { _, err := e.Embed(p.full, p.faces); return err })
			})
		}
	}
}

// BenchmarkThroughput: two goroutines (one per core) each embedding one face
// at a time, the shape of a worker pool. Parallelism 1 serialises the runs
// like a mutex per model would; 2 lets both run at once on the shared
// session.
func BenchmarkThroughput(b *testing.B) {
	for _, c := range []struct{ intra, parallel int }{{1, 1}, {1, 2}, {2, 1}, {2, 2}} {
		e := benchEngine(b, c.intra, c.parallel)
		p := benchPhotos(b, e)[0]
		b.Run(fmt.Sprintf("embed-2goroutines/intra%d-parallel%d", c.intra, c.parallel), func(b *testing.B) {
			b.SetParallelism(1) // GOMAXPROCS goroutines = 2
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.Embed(p.full, p.faces); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportFaces(b, 1)
		})
	}
}

// BenchmarkDecode: image/jpeg against libjpeg-turbo at full and reduced
// scale.
func BenchmarkDecode(b *testing.B) {
	photos := []struct {
		name string
		data []byte
	}{
		{"1920x1280", mosaic(b)},
		{"720x576", testenv.ReadPhoto(b, "franck_01829.jpg")},
	}
	for _, p := range photos {
		b.Run(p.name+"/image-jpeg", func(b *testing.B) {
			measure(b, 0, func() error { _, err := jpeg.Decode(bytes.NewReader(p.data)); return err })
		})
		for _, s := range []struct {
			name string
			div  int
		}{{"turbo-full", 1}, {"turbo-1/2", 2}, {"turbo-1/4", 4}, {"turbo-1/8", 8}} {
			info, err := imaging.DecodeConfig(p.data, imaging.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(p.name+"/"+s.name, func(b *testing.B) {
				w, h := (info.Width+s.div-1)/s.div, (info.Height+s.div-1)/s.div
				if s.div == 1 {
					w, h = 0, 0
				}
				measure(b, 0, func() error { _, _, err := imaging.DecodeForSize(p.data, imaging.Limits{}, w, h); return err })
			})
		}
	}
}
