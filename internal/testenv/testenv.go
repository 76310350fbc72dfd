// Package testenv locates the artefacts that set-up fetched (ONNX Runtime,
// face models, photos) and the services it started, for tests.
//
// Missing artefacts fail the test instead of skipping it: a suite that skips
// its way to green would hide a broken set-up.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.mod, found by walking up from the
// working directory of the test.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("testenv: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("testenv: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// AssetsDir returns the folder set-up fills ($POI_ASSETS_DIR, else .assets
// at the repository root).
func AssetsDir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("POI_ASSETS_DIR"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(tb), ".assets")
}

func mustExist(tb testing.TB, path string) string {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("testenv: %s is missing (run `go tool task setup`): %v", path, err)
	}
	return path
}

// ORTLibrary returns the path of the pinned ONNX Runtime shared library.
func ORTLibrary(tb testing.TB) string {
	tb.Helper()
	return mustExist(tb, filepath.Join(AssetsDir(tb), "lib", "libonnxruntime.so"))
}

// ModelDir returns the folder holding fr_detect.onnx, fr_landmark.onnx and
// fr_feature.onnx.
func ModelDir(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(AssetsDir(tb), "models")
	mustExist(tb, filepath.Join(dir, "fr_feature.onnx"))
	return dir
}

// Photo returns the path of a named test photo (for example "cage.jpg").
func Photo(tb testing.TB, name string) string {
	tb.Helper()
	return mustExist(tb, filepath.Join(AssetsDir(tb), "photos", name))
}

// ReadPhoto returns the bytes of a named test photo.
func ReadPhoto(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(Photo(tb, name))
	if err != nil {
		tb.Fatalf("testenv: read %s: %v", name, err)
	}
	return b
}
