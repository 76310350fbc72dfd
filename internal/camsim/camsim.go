// Package camsim publishes a folder of JPEGs as a camera over MQTT, so that
// the pipeline can be seen working without a real camera.
package camsim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"poi/internal/mqttclient"
)

// Options configures a simulated camera.
type Options struct {
	CameraID string
	// Files are the frames, published in order.
	Files []string
	FPS   float64
	// Loop restarts from the first frame; Count stops after that many
	// frames (0: no limit).
	Loop  bool
	Count int
	// Format is "json" ({timestamp, image} on poi/frames/{camera}, the
	// default: each frame is stamped, so a looped file is a new message),
	// "raw" (JPEG bytes on poi/frames/{camera}) or "scenescape"
	// ({timestamp, id, image} on scenescape/image/camera/{camera}).
	Format string
}

// Glob returns the files of dir matching pattern, sorted.
func Glob(dir, pattern string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		return nil, fmt.Errorf("camsim glob: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("camsim: no files match %s in %s", pattern, dir)
	}
	sort.Strings(files)
	return files, nil
}

// Run publishes until ctx ends, the frames run out (without Loop) or Count
// frames were sent. It returns the number of frames published.
func Run(ctx context.Context, o Options, cl *mqttclient.Client) (int, error) {
	if o.FPS <= 0 || o.FPS > 1000 {
		return 0, fmt.Errorf("camsim: fps must be in (0, 1000], got %g", o.FPS)
	}
	frames := make([][]byte, len(o.Files))
	for i, f := range o.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, fmt.Errorf("camsim: %w", err)
		}
		frames[i] = b
	}
	if len(frames) == 0 {
		return 0, fmt.Errorf("camsim: no frames")
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.FPS))
	defer tick.Stop()
	sent := 0
	for i := 0; ; i++ {
		if i == len(frames) {
			if !o.Loop {
				return sent, nil
			}
			i = 0
		}
		topic, payload, err := encode(o, frames[i], time.Now())
		if err != nil {
			return sent, err
		}
		if err := cl.Publish(ctx, topic, 1, false, payload); err != nil {
			return sent, fmt.Errorf("camsim frame %d: %w", sent, err)
		}
		sent++
		if o.Count > 0 && sent >= o.Count {
			return sent, nil
		}
		select {
		case <-ctx.Done():
			return sent, nil
		case <-tick.C:
		}
	}
}

func encode(o Options, jpeg []byte, now time.Time) (string, []byte, error) {
	ts := now.UTC().Format(time.RFC3339Nano)
	switch o.Format {
	case "raw":
		return "poi/frames/" + o.CameraID, jpeg, nil
	case "", "json":
		b, err := json.Marshal(map[string]string{"timestamp": ts, "image": base64.StdEncoding.EncodeToString(jpeg)})
		return "poi/frames/" + o.CameraID, b, err
	case "scenescape":
		b, err := json.Marshal(map[string]string{"timestamp": ts, "id": o.CameraID, "image": base64.StdEncoding.EncodeToString(jpeg)})
		return "scenescape/image/camera/" + o.CameraID, b, err
	}
	return "", nil, fmt.Errorf("camsim: unknown format %q (raw, json, scenescape)", o.Format)
}
