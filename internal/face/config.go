package face

import (
	"fmt"
	"runtime"

	"poi/internal/imaging"
)

// Defaults. The detection ones are those of RESEARCH.md §3, with which every
// face of the test photos is found and nothing else (TestSimilarityMatrix,
// TestDetectGroupPhoto, TestNoFace); the threading ones were measured on 2
// cores (docs/bench-face-engine.md).
const (
	// DefaultModelDir and DefaultLibraryPath are where scripts/setup.sh
	// puts the models and ONNX Runtime, relative to the repository root.
	DefaultModelDir    = ".assets/models"
	DefaultLibraryPath = ".assets/lib/libonnxruntime.so"

	// DefaultScoreThreshold is the detector confidence a face needs.
	DefaultScoreThreshold = 0.7
	// DefaultNMSIoU: of two boxes overlapping more than this, the less
	// confident one is dropped.
	DefaultNMSIoU = 0.3
	// DefaultMinFaceSize (pixels of the full-resolution image, shorter side
	// of the box): a smaller face would be blown up more than five times to
	// fill the 112x112 crop, which is mostly interpolation.
	DefaultMinFaceSize = 20
	// DefaultIntraOpThreads: one thread per model run; concurrency comes
	// from several runs at once (Config.Parallelism), which measured better
	// on 2 cores than splitting each run over both cores.
	DefaultIntraOpThreads = 1
)

// Config configures an Engine. Start from DefaultConfig.
type Config struct {
	// ModelDir holds fr_detect.onnx, fr_landmark.onnx and fr_feature.onnx.
	ModelDir string
	// LibraryPath is the ONNX Runtime shared library (libonnxruntime.so,
	// version 1.24 or newer). One process loads only one.
	LibraryPath string
	// IntraOpThreads is the number of threads one model run may use.
	IntraOpThreads int
	// Parallelism is how many runs of each model may be in flight at once
	// across all goroutines using the engine; Embed also runs the faces of
	// one image in parallel up to this number.
	Parallelism int
	// ScoreThreshold is the minimum detector confidence, in (0, 1).
	ScoreThreshold float32
	// NMSIoU is the overlap above which the weaker of two boxes is dropped,
	// in (0, 1].
	NMSIoU float32
	// MinFaceSize is the minimum length, in full-resolution pixels, of the
	// shorter side of a face box; 0 keeps every face.
	MinFaceSize int
	// Limits bound the images Analyze and AnalyzeLargest decode (zero fields
	// mean the imaging defaults: 10 MB, 40 MP).
	Limits imaging.Limits
}

// DefaultConfig returns the defaults; Parallelism is the number of CPUs.
func DefaultConfig() Config {
	return Config{
		ModelDir:       DefaultModelDir,
		LibraryPath:    DefaultLibraryPath,
		IntraOpThreads: DefaultIntraOpThreads,
		Parallelism:    runtime.NumCPU(),
		ScoreThreshold: DefaultScoreThreshold,
		NMSIoU:         DefaultNMSIoU,
		MinFaceSize:    DefaultMinFaceSize,
	}
}

// Validate reports the first invalid field by name.
func (c Config) Validate() error {
	switch {
	case c.ModelDir == "":
		return fmt.Errorf("face config: ModelDir is empty")
	case c.LibraryPath == "":
		return fmt.Errorf("face config: LibraryPath is empty")
	case c.IntraOpThreads < 1:
		return fmt.Errorf("face config: IntraOpThreads %d, want at least 1", c.IntraOpThreads)
	case c.Parallelism < 1:
		return fmt.Errorf("face config: Parallelism %d, want at least 1", c.Parallelism)
	case !(c.ScoreThreshold > 0 && c.ScoreThreshold < 1):
		return fmt.Errorf("face config: ScoreThreshold %v outside (0, 1)", c.ScoreThreshold)
	case !(c.NMSIoU > 0 && c.NMSIoU <= 1):
		return fmt.Errorf("face config: NMSIoU %v outside (0, 1]", c.NMSIoU)
	case c.MinFaceSize < 0:
		return fmt.Errorf("face config: MinFaceSize %d is negative", c.MinFaceSize)
	case c.Limits.MaxBytes < 0 || c.Limits.MaxPixels < 0:
		return fmt.Errorf("face config: Limits %+v has a negative field", c.Limits)
	}
	return nil
}
