package loadgen

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// SceneSource is a SceneScape camera: detection messages of its scene.
type SceneSource struct {
	Scene *Scene
	Model string
	Rate  float64 // the camera's own message rate, reported in the message
}

// Next implements Source.
func (s *SceneSource) Next(r *rand.Rand, now time.Time) (string, []byte, string) {
	persons, visit := s.Scene.Next(r, now)
	b, err := SceneScapeMessage(s.Scene.Camera, now, s.Rate, persons, s.Model)
	if err != nil {
		return "", nil, ""
	}
	return "scenescape/data/camera/" + s.Scene.Camera, b, visit
}

// FrameSource is a plain camera: raw JPEG frames on poi/frames/{camera},
// the efficient form of that topic (the bridge stamps them on arrival).
// Each frame gets a JPEG comment segment with a counter right after its
// start marker: decoders skip it, and it makes every message distinct, as a
// real camera's are (a repeated payload would be dropped as a redelivery).
type FrameSource struct {
	Camera string
	jpegs  [][]byte
	n      int
}

// NewFrameSource keeps the JPEGs.
func NewFrameSource(camera string, jpegs [][]byte) *FrameSource {
	return &FrameSource{Camera: camera, jpegs: jpegs}
}

// Next implements Source.
func (s *FrameSource) Next(_ *rand.Rand, now time.Time) (string, []byte, string) {
	j := s.jpegs[s.n%len(s.jpegs)]
	s.n++
	return "poi/frames/" + s.Camera, StampJPEG(j, s.Camera, s.n, now), ""
}

// StampJPEG inserts a comment segment (FF FE) naming the camera, the frame
// number and the time after the start-of-image marker.
func StampJPEG(jpeg []byte, camera string, n int, now time.Time) []byte {
	text := fmt.Sprintf("poi bench %s #%d %s", camera, n, now.UTC().Format(time.RFC3339Nano))
	seg := []byte{0xFF, 0xFE, byte((len(text) + 2) >> 8), byte(len(text) + 2)}
	out := make([]byte, 0, len(jpeg)+len(seg)+len(text))
	out = append(out, jpeg[:2]...)
	out = append(out, seg...)
	out = append(out, text...)
	return append(out, jpeg[2:]...)
}
