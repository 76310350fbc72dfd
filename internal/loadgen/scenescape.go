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
// whose tracks continue) and visitor slots that show an enrolled face for
// a while, then a different one (each visit a new track, so an alert).
type Scene struct {
	Camera string
	// Strangers keep their vector and box.
	Strangers []Person
	// Visitors are the enrolled faces shown in turn in the visitor slot.
	Visitors []Person
	// VisitMessages is how many messages one visit lasts.
	VisitMessages int

	n     int
	visit int
}

// Next returns the persons of the camera's next message and, when a visit
// begins with it, the POI that starts being visible.
func (s *Scene) Next(r *rand.Rand) (persons []Person, visitStart string) {
	for _, p := range s.Strangers {
		persons = append(persons, Person{Box: p.Box, Vector: Jitter(r, p.Vector, 0.01), POI: ""})
	}
	if len(s.Visitors) > 0 {
		if s.n%max(1, s.VisitMessages) == 0 {
			s.visit = (s.n / max(1, s.VisitMessages)) % len(s.Visitors)
			visitStart = s.Visitors[s.visit].POI
		}
		v := s.Visitors[s.visit]
		// A visitor enters at a different place each time, so IoU does not
		// link it to the previous visitor's track either.
		box := v.Box
		box[0] += (s.n / max(1, s.VisitMessages) % 4) * box[2]
		persons = append(persons, Person{Box: box, Vector: Jitter(r, v.Vector, 0.01), POI: v.POI})
	}
	s.n++
	return persons, visitStart
}
