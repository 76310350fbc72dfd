package eval

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"poi/internal/face"
	"poi/internal/imaging"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListPhotos(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"bob/2.JPG": "", "bob/1.jpg": "", "bob/notes.txt": "", "bob/.hidden.jpg": "",
		"alice/a.png": "", "alice/b.webp": "", "alice/c.jpeg": "",
		".ok": "", "stray.jpg": "", ".cache/x.jpg": "",
	})
	// An identity folder may be a link, as in the set that setup assembles.
	if err := os.Symlink(filepath.Join(root, "bob"), filepath.Join(root, "carol")); err != nil {
		t.Fatal(err)
	}
	got, err := ListPhotos(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, p.Identity+"/"+filepath.Base(p.Path))
	}
	want := []string{"alice/a.png", "alice/b.webp", "alice/c.jpeg", "bob/1.jpg", "bob/2.JPG", "carol/1.jpg", "carol/2.JPG"}
	if !slices.Equal(names, want) {
		t.Errorf("ListPhotos = %v, want %v", names, want)
	}
	if _, err := ListPhotos(filepath.Join(root, "missing")); err == nil {
		t.Errorf("ListPhotos(missing folder) succeeded")
	}
}

// fakeEmbedder answers from the photo's bytes: "noface", "corrupt" and
// "boom" fail like the engine would; anything else is a face whose vector
// is unit(16, n, 0) for content "axis n".
type fakeEmbedder struct{}

func (fakeEmbedder) AnalyzeLargest(data []byte) ([]face.Face, int, error) {
	switch s := string(data); s {
	case "noface":
		return nil, -1, fmt.Errorf("analyze: %w", face.ErrNoFace)
	case "corrupt":
		return nil, -1, fmt.Errorf("analyze: decode: %w: jpeg: truncated", imaging.ErrCorrupt)
	case "boom":
		return nil, -1, errors.New("onnxruntime: run failed")
	default:
		var axis int
		if _, err := fmt.Sscanf(s, "axis %d", &axis); err != nil {
			return nil, -1, err
		}
		// Two faces, the largest second: Embed must use the index.
		return []face.Face{{}, {Embedding: unit(16, axis, 0)}}, 1, nil
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestEmbed(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"a/1.jpg": "axis 0", "a/2.jpg": "axis 1", "a/3.jpg": "noface",
		"b/1.jpg": "corrupt", "b/2.jpg": "axis 2", "c/1.jpg": "axis 3",
	})
	photos, err := ListPhotos(root)
	if err != nil {
		t.Fatal(err)
	}
	faces, skipped, err := Embed(context.Background(), fakeEmbedder{}, photos, 3, discard())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, f := range faces {
		got = append(got, f.Identity+"/"+filepath.Base(f.Photo))
		if f.Vector == nil {
			t.Errorf("face %d has no vector: the largest face's index was not used", i)
		}
	}
	if want := []string{"a/1.jpg", "a/2.jpg", "b/2.jpg", "c/1.jpg"}; !slices.Equal(got, want) {
		t.Errorf("faces %v, want %v in order", got, want)
	}
	if len(skipped) != 2 || !strings.HasSuffix(skipped[0].Photo, "a/3.jpg") || !strings.Contains(skipped[0].Reason, "no face") ||
		!strings.Contains(skipped[1].Reason, "corrupt") {
		t.Errorf("skipped %+v, want a/3.jpg (no face) and b/1.jpg (corrupt)", skipped)
	}

	writeFiles(t, root, map[string]string{"d/1.jpg": "boom"})
	photos, _ = ListPhotos(root)
	if _, _, err := Embed(context.Background(), fakeEmbedder{}, photos, 2, discard()); err == nil || !strings.Contains(err.Error(), "d/1.jpg") {
		t.Errorf("engine failure: err %v, want it reported with the photo", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Embed(ctx, fakeEmbedder{}, photos, 2, discard()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v, want context.Canceled", err)
	}
}

func TestParseInterleaved(t *testing.T) {
	for _, args := range [][]string{
		{"DIR", "--split", "--seed", "7"},
		{"--split", "DIR", "--seed=7"},
		{"--seed", "7", "--split", "DIR"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		split := fs.Bool("split", false, "")
		seed := fs.Uint64("seed", 1, "")
		pos, err := parseInterleaved(fs, args)
		if err != nil || !slices.Equal(pos, []string{"DIR"}) || !*split || *seed != 7 {
			t.Errorf("%v: pos %v split %v seed %v err %v", args, pos, *split, *seed, err)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := parseInterleaved(fs, []string{"DIR", "--nope"}); err == nil {
		t.Errorf("unknown flag accepted")
	}
}

func TestMainUsage(t *testing.T) {
	var out, errOut strings.Builder
	if code := Main(nil, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage: poi eval DIR") {
		t.Errorf("no DIR: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := Main([]string{t.TempDir()}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "no photos") {
		t.Errorf("empty DIR: exit %d, stderr %q", code, errOut.String())
	}
	if got := lookup([]string{"POI_CONFIGX=1", "POI_CONFIG=/x.yaml"}, "POI_CONFIG"); got != "/x.yaml" {
		t.Errorf("lookup = %q", got)
	}
}
