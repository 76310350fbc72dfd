package eval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"poi/internal/face"
	"poi/internal/imaging"
)

// Embedder embeds the largest face of an encoded photo; *face.Engine is
// one.
type Embedder interface {
	AnalyzeLargest(data []byte) (faces []face.Face, index int, err error)
}

// Photo is a labelled photo file: dir/{Identity}/{file}.
type Photo struct {
	Identity string
	Path     string
}

// ListPhotos returns the photos of dir/{identity}/*.{jpg,jpeg,png,webp},
// sorted by identity then file name. Hidden entries are ignored, and so
// are plain files directly in dir: an identity is a folder.
func ListPhotos(dir string) ([]Photo, error) {
	ids, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	exts := []string{".jpg", ".jpeg", ".png", ".webp"} // what the engine decodes
	var out []Photo
	for _, id := range ids {
		if strings.HasPrefix(id.Name(), ".") || !isDir(filepath.Join(dir, id.Name())) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, id.Name()))
		if err != nil {
			return nil, fmt.Errorf("eval: identity %s: %w", id.Name(), err)
		}
		for _, f := range files {
			ext := strings.ToLower(filepath.Ext(f.Name()))
			if strings.HasPrefix(f.Name(), ".") || !slices.Contains(exts, ext) {
				continue
			}
			out = append(out, Photo{Identity: id.Name(), Path: filepath.Join(dir, id.Name(), f.Name())})
		}
	}
	slices.SortFunc(out, func(a, b Photo) int {
		if c := strings.Compare(a.Identity, b.Identity); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out, nil
}

// isDir follows links: the evaluation set is a folder of links.
func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// Embed embeds the largest face of every photo with up to workers calls at
// once, keeping the order of photos. A photo with no face, or that does not
// decode, is skipped and reported; any other failure (unreadable file,
// engine error) stops the evaluation, since a report that silently lost
// photos would overstate what it measured.
func Embed(ctx context.Context, e Embedder, photos []Photo, workers int, log *slog.Logger) ([]Face, []Skip, error) {
	type result struct {
		face Face
		skip string
		err  error
	}
	results := make([]result, len(photos))
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p := photos[i]
				data, err := os.ReadFile(p.Path)
				if err != nil {
					results[i].err = fmt.Errorf("eval: %w", err)
					continue
				}
				faces, idx, err := e.AnalyzeLargest(data)
				switch {
				case err == nil:
					results[i].face = Face{Identity: p.Identity, Photo: p.Path, Vector: faces[idx].Embedding}
				case isInputError(err):
					results[i].skip = err.Error()
				default:
					results[i].err = fmt.Errorf("eval: %s: %w", p.Path, err)
				}
			}
		}()
	}
feed:
	for i := range photos {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("eval: %w", err)
	}
	var faces []Face
	skipped := []Skip{}
	for i, r := range results {
		switch {
		case r.err != nil:
			return nil, nil, r.err
		case r.skip != "":
			log.Warn("photo skipped", "photo", photos[i].Path, "reason", r.skip)
			skipped = append(skipped, Skip{Photo: photos[i].Path, Reason: r.skip})
		default:
			faces = append(faces, r.face)
		}
	}
	return faces, skipped, nil
}

// isInputError reports whether err is about the photo itself rather than
// the engine.
func isInputError(err error) bool {
	for _, target := range []error{face.ErrNoFace, imaging.ErrEmpty, imaging.ErrTooLarge,
		imaging.ErrTooManyPixels, imaging.ErrUnsupportedFormat, imaging.ErrCorrupt} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
