package testenv

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// SceneScapeFixture returns one of the SceneScape messages the project wrote
// for its tests (testdata/scenescape at the repository root), so that every
// clone can run the tests that use them.
func SceneScapeFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(RepoRoot(tb), "testdata", "scenescape", name))
	if err != nil {
		tb.Fatalf("testenv: SceneScape fixture: %v", err)
	}
	return b
}

// ExternalSceneScapeDir is where samples captured from a real SceneScape
// deployment sit on machines that have them: shared/fixtures/scenescape
// beside the checkout. It is computed from the repository root so that a
// clone elsewhere simply has none.
func ExternalSceneScapeDir(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(RepoRoot(tb), "..", "shared", "fixtures", "scenescape")
}

// ExternalSceneScapeSamples lists the *.json files of ExternalSceneScapeDir,
// sorted; none when the folder does not exist. Any other error reading it
// fails the test: a folder that is there but unreadable is a broken machine,
// not an absent option.
func ExternalSceneScapeSamples(tb testing.TB) (dir string, files []string) {
	tb.Helper()
	dir = ExternalSceneScapeDir(tb)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return dir, nil
	} else if err != nil {
		tb.Fatalf("testenv: external SceneScape samples: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		tb.Fatalf("testenv: external SceneScape samples: %v", err)
	}
	slices.Sort(files)
	return dir, files
}
