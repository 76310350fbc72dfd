// Package loadgen is `poi bench`: a load generator an operator points at any
// deployment. It publishes frames or SceneScape messages over MQTT at a
// given rate (open loop) or searches for the highest rate the deployment
// sustains, listens for the alerts on MQTT, and reads what the deployment
// did from its /metrics and its JetStream consumers.
package loadgen

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Person is one person a simulated SceneScape camera reports: a box and the
// face vector its face sub-object carries.
type Person struct {
	Box    [4]int // x, y, width, height
	Vector []float32
	// POI names the enrolled person the vector belongs to ("" for a
	// stranger), for matching alerts to visits.
	POI string
}

// sceneScapeMsg is SceneScape's camera detection message (RESEARCH.md §2).
type sceneScapeMsg struct {
	ID        string             `json:"id"`
	Timestamp string             `json:"timestamp"`
	Rate      float64            `json:"rate"`
	Objects   map[string][]ssObj `json:"objects"`
}

type ssObj struct {
	ID         int                `json:"id"`
	Category   string             `json:"category"`
	Confidence float64            `json:"confidence"`
	Box        map[string]int     `json:"bounding_box_px"`
	Metadata   map[string]ssReid  `json:"metadata,omitempty"`
	SubObjects map[string][]ssObj `json:"sub_objects,omitempty"`
}

type ssReid struct {
	Embedding string `json:"embedding_vector"`
	Model     string `json:"model_name"`
}

// SceneScapeMessage builds a camera detection message: each person with a
// face sub-object (the upper fifth of the body box) carrying the person's
// face vector of model, base64 little-endian float32 as SceneScape sends.
func SceneScapeMessage(camera string, ts time.Time, rate float64, persons []Person, model string) ([]byte, error) {
	m := sceneScapeMsg{ID: camera, Timestamp: ts.UTC().Format("2006-01-02T15:04:05.000Z"), Rate: rate, Objects: map[string][]ssObj{}}
	for i, p := range persons {
		x, y, w, h := p.Box[0], p.Box[1], p.Box[2], p.Box[3]
		face := ssObj{ID: i, Category: "face", Confidence: 0.97,
			Box:      map[string]int{"x": x + w/4, "y": y, "width": w / 2, "height": max(1, h/5)},
			Metadata: map[string]ssReid{"reid": {Embedding: EncodeVector(p.Vector), Model: model}},
		}
		m.Objects["person"] = append(m.Objects["person"], ssObj{ID: i, Category: "person", Confidence: 0.93,
			Box: map[string]int{"x": x, "y": y, "width": w, "height": h}, SubObjects: map[string][]ssObj{"face": {face}}})
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("scenescape message: %w", err)
	}
	return b, nil
}

// EncodeVector is SceneScape's embedding encoding: base64 of little-endian
// float32s.
func EncodeVector(v []float32) string {
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// Jitter returns v with Gaussian noise of sd per component, normalised: an
// observation of the same face, never twice the same vector.
func Jitter(r *rand.Rand, v []float32, sd float64) []float32 {
	out := make([]float32, len(v))
	var n float64
	for i, x := range v {
		y := float64(x) + r.NormFloat64()*sd
		out[i] = float32(y)
		n += y * y
	}
	n = math.Sqrt(n)
	for i := range out {
		out[i] = float32(float64(out[i]) / n)
	}
	return out
}

// Scene is a simulated SceneScape camera: persons that stay (strangers,
// whose tracks continue) and a visitor slot that shows each enrolled face
// in turn for Visit, at a new place each time. A POI comes back only after
// every other has been shown, which with 10 POIs and a visit of 700 ms is
// longer than the tracker's silence window: each visit is a new track, so
// an alert.
type Scene struct {
	Camera string
	// Strangers keep their vector and box.
	Strangers []Person
	// Visitors are the enrolled faces shown in turn.
	Visitors []Person
	Visit    time.Duration

	start time.Time
	visit int64
}

// visitPlaces is how many places a visitor appears at before one repeats:
// a grid far larger than the silence window covers, so IoU never links a
// visitor to the track of an earlier one.
const visitCols, visitRows = 19, 4

// Next returns the persons of the camera's message at now and, when a visit
// begins with it, the POI that starts being visible.
func (s *Scene) Next(r *rand.Rand, now time.Time) (persons []Person, visitStart string) {
	for _, p := range s.Strangers {
		persons = append(persons, Person{Box: p.Box, Vector: Jitter(r, p.Vector, 0.01)})
	}
	if len(s.Visitors) == 0 {
		return persons, ""
	}
	if s.start.IsZero() {
		s.start, s.visit = now, -1
	}
	k := int64(now.Sub(s.start) / max(s.Visit, time.Millisecond))
	if k != s.visit {
		s.visit = k
		visitStart = s.Visitors[k%int64(len(s.Visitors))].POI
	}
	v := s.Visitors[k%int64(len(s.Visitors))]
	place := k % (visitCols * visitRows)
	box := v.Box
	box[0] += int(place%visitCols) * 2 * box[2]
	box[1] += int(place/visitCols) * 2 * box[3]
	persons = append(persons, Person{Box: box, Vector: Jitter(r, v.Vector, 0.01), POI: v.POI})
	return persons, visitStart
}
