package loadgen

import (
	"encoding/base64"
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

// FrameSource is a plain camera: JSON frames {timestamp, image} on
// poi/frames/{camera}; the timestamp makes every message distinct, as a real
// camera's are (a repeated payload would be dropped as a redelivery).
type FrameSource struct {
	Camera string
	b64    []string
	n      int
}

// NewFrameSource encodes the JPEGs once.
func NewFrameSource(camera string, jpegs [][]byte) *FrameSource {
	s := &FrameSource{Camera: camera}
	for _, j := range jpegs {
		s.b64 = append(s.b64, base64.StdEncoding.EncodeToString(j))
	}
	return s
}

// Next implements Source.
func (s *FrameSource) Next(_ *rand.Rand, now time.Time) (string, []byte, string) {
	img := s.b64[s.n%len(s.b64)]
	s.n++
	msg := make([]byte, 0, len(img)+64)
	msg = append(msg, `{"timestamp":"`...)
	msg = now.UTC().AppendFormat(msg, "2006-01-02T15:04:05.000000Z")
	msg = append(msg, `","image":"`...)
	msg = append(msg, img...)
	msg = append(msg, `"}`...)
	return "poi/frames/" + s.Camera, msg, ""
}
