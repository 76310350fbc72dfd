package streams

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
)

// Version is the envelope version every message carries in "v". A consumer
// rejects (to the dead-letter stream) a version it does not know instead of
// misreading it.
const Version = 1

// Box is a face or person box in source-image pixels: x1, y1, x2, y2.
type Box [4]int

// Vector is an embedding on the wire: a base64 string of little-endian
// float32s. A 512-d vector as a JSON list costs about twenty times the CPU
// to encode and decode and three times the bytes; at thousands of
// observations a second that was most of the pipeline's JSON time. A JSON
// list is still accepted, so messages written before this encoding replay.
type Vector []float32

// MarshalJSON encodes v as base64 of little-endian float32s.
func (v Vector) MarshalJSON() ([]byte, error) {
	if v == nil {
		return []byte("null"), nil
	}
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(raw))+2)
	out[0], out[len(out)-1] = '"', '"'
	base64.StdEncoding.Encode(out[1:], raw)
	return out, nil
}

// UnmarshalJSON accepts the base64 form and a JSON list of numbers.
func (v *Vector) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*v = nil
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var list []float32
		if err := json.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("vector: %w", err)
		}
		*v = list
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("vector: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("vector: %w", err)
	}
	if len(raw)%4 != 0 {
		return fmt.Errorf("vector: %d bytes is not a whole number of float32s", len(raw))
	}
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	*v = out
	return nil
}

// Width of the box.
func (b Box) Width() int { return b[2] - b[0] }

// Height of the box.
func (b Box) Height() int { return b[3] - b[1] }

// Area of the box (0 when degenerate).
func (b Box) Area() int {
	if b.Width() <= 0 || b.Height() <= 0 {
		return 0
	}
	return b.Width() * b.Height()
}

// IoU is the intersection over union of two boxes.
func (b Box) IoU(o Box) float64 {
	ix := max(0, min(b[2], o[2])-max(b[0], o[0]))
	iy := max(0, min(b[3], o[3])-max(b[1], o[1]))
	inter := ix * iy
	union := b.Area() + o.Area() - inter
	if union <= 0 {
		return 0
	}
	return float64(inter) / float64(union)
}

// Frame is a camera frame for the full path (poi.ingest.frame.{camera}).
type Frame struct {
	Header
	CameraID  string    `json:"camera_id"`
	Timestamp time.Time `json:"timestamp"`
	JPEG      []byte    `json:"-"` // the message body
}

// ExternalObject is a detection made upstream (SceneScape), with the
// embedding it carried, if any.
type ExternalObject struct {
	Box        Box     `json:"box"`
	Confidence float32 `json:"confidence"`
	Embedding  Vector  `json:"embedding,omitempty"`
	// Dim is the length of Embedding, which travels in the message body.
	Dim       int    `json:"dim,omitempty"`
	ModelName string `json:"model_name,omitempty"`
}

// Detections is a SceneScape camera message reduced to what the pipeline
// uses (poi.ingest.scenescape.{camera}).
type Detections struct {
	Header
	CameraID  string           `json:"camera_id"`
	Timestamp time.Time        `json:"timestamp"`
	Faces     []ExternalObject `json:"faces,omitempty"`
	Persons   []ExternalObject `json:"persons,omitempty"`
}

// CameraImage is a SceneScape camera image (poi.ingest.image.{camera}).
type CameraImage struct {
	Header
	CameraID  string    `json:"camera_id"`
	Timestamp time.Time `json:"timestamp"`
	JPEG      []byte    `json:"-"` // the message body
}

// RegionObject is one object entering or leaving a region.
type RegionObject struct {
	ID string `json:"id"`
	// Cameras that saw the object, when the event says so.
	Cameras []string `json:"cameras,omitempty"`
	// CameraBounds are the object's boxes per camera, when the event has them.
	CameraBounds map[string]Box `json:"camera_bounds,omitempty"`
	// Dwell is the seconds spent in the region (exits only).
	Dwell float64 `json:"dwell,omitempty"`
}

// RegionEvent is a SceneScape region event (poi.ingest.region.{scene}.{region}).
type RegionEvent struct {
	Header
	SceneID    string         `json:"scene_id"`
	SceneName  string         `json:"scene_name,omitempty"`
	RegionID   string         `json:"region_id"`
	RegionName string         `json:"region_name,omitempty"`
	Timestamp  time.Time      `json:"timestamp"`
	Entered    []RegionObject `json:"entered,omitempty"`
	Exited     []RegionObject `json:"exited,omitempty"`
}

// ObservedFace is one face of a frame after detection.
type ObservedFace struct {
	Box   Box     `json:"box"`
	Score float32 `json:"score"`
	// Embedding is set when the face was embedded (by us, or upstream in our
	// model's space); Model names the model it came from.
	Embedding Vector `json:"embedding,omitempty"`
	Model     string `json:"model,omitempty"`
	// Landmarks are the five alignment points in frame pixels (zero when
	// unknown): with them the tracker can have the face embedded later, only
	// if a track needs it.
	Landmarks [5][2]float64 `json:"landmarks"`
}

// Observation is every face of one frame (poi.obs.{camera}).
type Observation struct {
	Header
	CameraID  string    `json:"camera_id"`
	Timestamp time.Time `json:"timestamp"`
	// FrameNumber is the frame's sequence number in POI_INGEST.
	FrameNumber uint64 `json:"frame_number"`
	// Tick marks a synthetic observation that only advances the camera's
	// clock (it closes tracks of an idle camera).
	Tick      bool           `json:"tick,omitempty"`
	FrameJPEG []byte         `json:"-"` // the message body
	Faces     []ObservedFace `json:"faces"`
}

// Sample is one vector of the all-detections index (poi.sample.{camera}).
type Sample struct {
	Header
	ID        int64     `json:"id"`
	TrackID   string    `json:"track_id"`
	CameraID  string    `json:"camera_id"`
	Timestamp time.Time `json:"timestamp"`
	Box       Box       `json:"box"`
	Model     string    `json:"model"`
	Vector    Vector    `json:"vector,omitempty"` // the message body on the wire
}

// Sighting is the tracked faces of one observation with their embeddings,
// for the alert stage (poi.sighting.{camera}): one message a frame, however
// many faces it has. A sighting of one face may also be written with the
// face's fields at the top level (TrackID, Box, Confidence, Embedding), as
// sightings were before they carried several faces.
type Sighting struct {
	Header
	TrackID     string        `json:"track_id,omitempty"`
	FrameNumber uint64        `json:"frame_number"`
	CameraID    string        `json:"camera_id"`
	Timestamp   time.Time     `json:"timestamp"`
	Box         Box           `json:"box"`
	Confidence  float32       `json:"confidence"`
	Model       string        `json:"model"`
	Embedding   Vector        `json:"embedding,omitempty"` // the message body on the wire
	Faces       []SightedFace `json:"faces,omitempty"`
}

// SightedFace is one face of a sighting.
type SightedFace struct {
	TrackID    string  `json:"track_id"`
	Box        Box     `json:"box"`
	Confidence float32 `json:"confidence"`
	Embedding  Vector  `json:"embedding,omitempty"` // in the message body on the wire
	Dim        int     `json:"dim,omitempty"`
}

// All returns the sighting's faces, in either form.
func (s *Sighting) All() []SightedFace {
	if len(s.Faces) > 0 || s.TrackID == "" {
		return s.Faces
	}
	return []SightedFace{{TrackID: s.TrackID, Box: s.Box, Confidence: s.Confidence, Embedding: s.Embedding}}
}

// RefVector is one reference vector of a POI.
type RefVector struct {
	EmbeddingID string `json:"embedding_id"`
	Vector      Vector `json:"vector"`
}

// Control ops.
const (
	OpEnrolled = "enrolled"
	OpDeleted  = "deleted"
	// OpRefs carries the whole current set of a POI's references after a
	// change (a photo added or removed, a confirmed sighting learned):
	// every replica replaces the POI's references with it.
	OpRefs = "refs"
)

// ControlEvent tells every POI index replica about an enrolment or deletion
// (poi.control.{op}.{poi_id}). A deletion carries the id only, never
// vectors: it is the tombstone every replica applies.
type ControlEvent struct {
	Header
	Op    string      `json:"op"`
	POIID string      `json:"poi_id"`
	Model string      `json:"model,omitempty"`
	Refs  []RefVector `json:"refs,omitempty"`
}

// ReplicaHolding is a POI index replica's answer on ReplicaQuery: how many
// FAISS ids it holds for the POI asked about.
type ReplicaHolding struct {
	Header
	Replica  string `json:"replica"`
	POIID    string `json:"poi_id"`
	FAISSIDs int    `json:"faiss_ids"`
}

// AlertMatch is the nested match object of an alert (seed contract).
type AlertMatch struct {
	CameraID        string  `json:"camera_id"`
	Confidence      float64 `json:"confidence"`
	SimilarityScore float64 `json:"similarity_score"`
	BBox            []int   `json:"bbox"`
	FrameNumber     int64   `json:"frame_number"`
	ThumbnailPath   string  `json:"thumbnail_path"`
}

// AlertPOIMetadata is the nested poi_metadata object of an alert.
type AlertPOIMetadata struct {
	Notes                string `json:"notes"`
	EnrollmentDate       string `json:"enrollment_date"`
	TotalPreviousMatches int64  `json:"total_previous_matches"`
}

// Alert is one element of GET /api/v1/alerts, the payload on POI_ALERTS and
// on MQTT poi/alerts/{severity}/{poi_id}: a contract with integrators.
type Alert struct {
	EventType   string           `json:"event_type"`
	AlertID     string           `json:"alert_id"`
	POIID       string           `json:"poi_id"`
	Severity    string           `json:"severity"`
	Timestamp   string           `json:"timestamp"`
	Status      string           `json:"status"`
	Match       AlertMatch       `json:"match"`
	POIMetadata AlertPOIMetadata `json:"poi_metadata"`
	// Additions to the seed, absent until a review sets Status: who
	// reviewed, when, and why.
	ReviewedBy *AuditActor `json:"reviewed_by,omitempty"`
	ReviewedAt string      `json:"reviewed_at,omitempty"`
	ReviewNote string      `json:"review_note,omitempty"`
}

// Review is the event of an alert's review on POI_ALERTS
// (poi.reviews.{status}.{poi_id}): a contract with integrators.
type Review struct {
	Header
	AlertID    string     `json:"alert_id"`
	POIID      string     `json:"poi_id"`
	CameraID   string     `json:"camera_id"`
	Status     string     `json:"status"`
	Previous   string     `json:"previous_status"`
	ReviewedBy AuditActor `json:"reviewed_by"`
	ReviewedAt string     `json:"reviewed_at"`
	Similarity float64    `json:"similarity_score"`
	// ReferenceAdded is set when a confirmation taught the POI the
	// sighting's face.
	ReferenceAdded string `json:"reference_added,omitempty"`
}

// AuditActor is who acted: the key's id, name and role ("cli" for the
// command line, "anonymous" with access control off).
type AuditActor struct {
	KeyID string `json:"key_id,omitempty"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

// AuditEvent is one record of the audit trail (POI_AUDIT, subject
// AuditSubj.{action}). It holds ids and counts, never photos, vectors,
// notes or keys.
type AuditEvent struct {
	Header
	Time      time.Time      `json:"time"`
	Action    string         `json:"action"`
	Actor     AuditActor     `json:"actor"`
	Remote    string         `json:"remote"`
	RequestID string         `json:"request_id,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
}

// Header is embedded in every envelope: its "v" field says how to read it.
type Header struct {
	V int `json:"v"`
}

// Current is the header of an envelope written now.
func Current() Header { return Header{V: Version} }

// Version is the envelope's version.
func (h Header) Version() int { return h.V }

// MetaHeader carries the fields of an envelope whose JPEG travels as the raw
// message body: as base64 inside JSON, frames cost a tenth of the
// pipeline's CPU in encoding alone.
const MetaHeader = "Poi-Meta"

// bodied is an envelope whose bulk travels as the raw message body, outside
// the JSON of MetaHeader: a JPEG, or vectors as little-endian float32s.
// Encoding a 512-d vector into JSON and back, even as base64, made JSON
// scanning half of the pipeline's CPU at thousands of messages a second.
type bodied interface {
	// takeBody returns the body and leaves the envelope without it until
	// restore is called.
	takeBody() (body []byte, restore func())
	// putBody gives the envelope its body back after its JSON is decoded.
	putBody(body []byte) error
}

func (f *Frame) takeBody() ([]byte, func())       { return f.JPEG, func() {} }
func (f *Frame) putBody(b []byte) error           { f.JPEG = b; return nil }
func (c *CameraImage) takeBody() ([]byte, func()) { return c.JPEG, func() {} }
func (c *CameraImage) putBody(b []byte) error     { c.JPEG = b; return nil }
func (o *Observation) takeBody() ([]byte, func()) { return o.FrameJPEG, func() {} }
func (o *Observation) putBody(b []byte) error     { o.FrameJPEG = b; return nil }

// takeBody: a sighting of one face at the top level carries its vector as
// the body; one with Faces, their vectors one after the other, each face
// keeping its length in Dim (a writer uses one form or the other).
func (s *Sighting) takeBody() ([]byte, func()) {
	if len(s.Faces) == 0 {
		v := s.Embedding
		s.Embedding = nil
		return FloatBytes(v), func() { s.Embedding = v }
	}
	var body []byte
	saved := make([]Vector, len(s.Faces))
	for i := range s.Faces {
		saved[i] = s.Faces[i].Embedding
		body = append(body, FloatBytes(saved[i])...)
		s.Faces[i].Dim, s.Faces[i].Embedding = len(saved[i]), nil
	}
	return body, func() {
		for i := range s.Faces {
			s.Faces[i].Embedding, s.Faces[i].Dim = saved[i], 0
		}
	}
}

func (s *Sighting) putBody(b []byte) error {
	if len(b) == 0 {
		return nil // an older message with its vector in the JSON
	}
	all, err := BytesFloats(b)
	if err != nil {
		return err
	}
	if len(s.Faces) == 0 {
		s.Embedding = all
		return nil
	}
	off := 0
	for i := range s.Faces {
		n := s.Faces[i].Dim
		if n <= 0 || off+n > len(all) {
			return fmt.Errorf("decode sighting: face %d of %d floats in a body of %d", i, n, len(all))
		}
		s.Faces[i].Embedding, s.Faces[i].Dim = all[off:off+n:off+n], 0
		off += n
	}
	if off != len(all) {
		return fmt.Errorf("decode sighting: %d floats in the body, %d described", len(all), off)
	}
	return nil
}

func (s *Sample) takeBody() ([]byte, func()) {
	v := s.Vector
	s.Vector = nil
	return FloatBytes(v), func() { s.Vector = v }
}

func (s *Sample) putBody(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	v, err := BytesFloats(b)
	s.Vector = v
	return err
}

// takeBody concatenates the objects' vectors, faces first, each object
// keeping its length in Dim.
func (d *Detections) takeBody() ([]byte, func()) {
	var body []byte
	var saved []Vector
	for _, objs := range [][]ExternalObject{d.Faces, d.Persons} {
		for i := range objs {
			saved = append(saved, objs[i].Embedding)
			body = append(body, FloatBytes(objs[i].Embedding)...)
			objs[i].Dim, objs[i].Embedding = len(objs[i].Embedding), nil
		}
	}
	return body, func() {
		k := 0
		for _, objs := range [][]ExternalObject{d.Faces, d.Persons} {
			for i := range objs {
				objs[i].Embedding, objs[i].Dim = saved[k], 0
				k++
			}
		}
	}
}

func (d *Detections) putBody(b []byte) error {
	all, err := BytesFloats(b)
	if err != nil {
		return err
	}
	off := 0
	for _, objs := range [][]ExternalObject{d.Faces, d.Persons} {
		for i := range objs {
			n := objs[i].Dim
			if n == 0 {
				continue
			}
			if n < 0 || off+n > len(all) {
				return fmt.Errorf("decode detections: vectors of %d floats in a body of %d", off+n, len(all))
			}
			objs[i].Embedding, objs[i].Dim = all[off:off+n:off+n], 0
			off += n
		}
	}
	if off != len(all) {
		return fmt.Errorf("decode detections: %d floats in the body, %d described", len(all), off)
	}
	return nil
}

// FloatBytes encodes v as little-endian float32s.
func FloatBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	out := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
	}
	return out
}

// BytesFloats decodes little-endian float32s.
func BytesFloats(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("vector of %d bytes is not a whole number of float32s", len(b))
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// NewMsg encodes an envelope (a pointer) for subject: bodied envelopes as
// MetaHeader JSON plus the raw body, the others as a JSON body.
func NewMsg(subject string, v any) (*nats.Msg, error) {
	m := nats.NewMsg(subject)
	if b, ok := v.(bodied); ok {
		body, restore := b.takeBody()
		meta, err := json.Marshal(v)
		restore()
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", subject, err)
		}
		m.Header.Set(MetaHeader, string(meta))
		m.Data = body
		return m, nil
	}
	meta, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	m.Data = meta
	return m, nil
}

// DecodeMsg reverses NewMsg and rejects a version it does not know. A
// bodied envelope without MetaHeader whose body is JSON is an older message
// (vectors inside the JSON), still replayed from the streams that keep them.
func DecodeMsg(h nats.Header, data []byte, v interface{ Version() int }) error {
	b, ok := v.(bodied)
	if !ok {
		return Decode(data, v)
	}
	meta := h.Get(MetaHeader)
	if meta == "" {
		if _, jpeg := v.(interface{ isJPEG() }); !jpeg && len(data) > 0 && data[0] == '{' {
			return Decode(data, v)
		}
		return fmt.Errorf("decode envelope: no %s header", MetaHeader)
	}
	if err := Decode([]byte(meta), v); err != nil {
		return err
	}
	if err := b.putBody(data); err != nil {
		return fmt.Errorf("decode envelope: %w", err)
	}
	return nil
}

func (*Frame) isJPEG()       {}
func (*CameraImage) isJPEG() {}
func (*Observation) isJPEG() {}

// Decode unmarshals an envelope and rejects a version it does not know.
func Decode(data []byte, v interface{ Version() int }) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode envelope: %w", err)
	}
	if got := v.Version(); got != Version {
		return fmt.Errorf("decode envelope: version %d, want %d", got, Version)
	}
	return nil
}
