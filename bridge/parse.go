package bridge

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"poi/streams"
)

// RejectError is an input the bridge refuses; Reason is its metric label.
type RejectError struct {
	Reason string
	Err    error
}

func (e *RejectError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *RejectError) Unwrap() error { return e.Err }

func reject(reason, format string, args ...any) error {
	return &RejectError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Limits bound what the bridge accepts.
type Limits struct {
	MaxFrameBytes int // a JPEG frame or image, decoded
	MaxJSONBytes  int // a detections or region message
	MaxVectorDim  int
	MaxObjects    int
}

// DefaultLimits suit 1080p-4K JPEG frames and SceneScape messages.
func DefaultLimits() Limits {
	return Limits{MaxFrameBytes: 12 << 20, MaxJSONBytes: 4 << 20, MaxVectorDim: 4096, MaxObjects: 512}
}

const maxIDLen = 128

func checkID(kind, id string) error {
	if id == "" || len(id) > maxIDLen {
		return reject("bad_topic", "%s id must be 1..%d bytes, got %d", kind, maxIDLen, len(id))
	}
	return nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, reject("bad_timestamp", "timestamp missing")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, reject("bad_timestamp", "timestamp %q is not RFC 3339", s)
	}
	if t.Year() < 2000 || t.Year() > 2200 {
		return time.Time{}, reject("bad_timestamp", "timestamp %q out of range", s)
	}
	return t.UTC(), nil
}

// CheckClock refuses a timestamp further than skew from now: a camera with
// a wrong clock (or a forged message dated 2200) would otherwise put its
// tracks where retention and time-range searches never look, or keep them
// past retention.
func CheckClock(ts, now time.Time, skew time.Duration) error {
	if d := ts.Sub(now); d > skew || d < -skew {
		return reject("clock_skew", "timestamp %s is %s from now, limit ±%s", ts.UTC().Format(time.RFC3339Nano), d.Round(time.Second), skew)
	}
	return nil
}

func decodeJPEG(b64 string, lim Limits) ([]byte, error) {
	if b64 == "" {
		return nil, reject("bad_image", "image missing")
	}
	if base64.StdEncoding.DecodedLen(len(b64)) > lim.MaxFrameBytes+3 {
		return nil, reject("too_large", "image over %d bytes", lim.MaxFrameBytes)
	}
	// SceneScape sends standard base64; some publishers prefix a data URL.
	if i := strings.Index(b64, ";base64,"); i >= 0 && i < 64 {
		b64 = b64[i+len(";base64,"):]
	}
	img, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, reject("bad_base64", "image is not base64: %v", err)
	}
	if err := checkJPEG(img, lim); err != nil {
		return nil, err
	}
	return img, nil
}

func checkJPEG(img []byte, lim Limits) error {
	if len(img) > lim.MaxFrameBytes {
		return reject("too_large", "image of %d bytes over the %d limit", len(img), lim.MaxFrameBytes)
	}
	if len(img) < 4 || img[0] != 0xFF || img[1] != 0xD8 || img[2] != 0xFF {
		return reject("not_jpeg", "image is not a JPEG")
	}
	return nil
}

// ParseFrame reads a poi/frames/{camera} payload: raw JPEG bytes, or JSON
// {timestamp, image: base64 JPEG}. Raw frames are stamped with now.
func ParseFrame(camera string, payload []byte, now time.Time, lim Limits) (streams.Frame, error) {
	if err := checkID("camera", camera); err != nil {
		return streams.Frame{}, err
	}
	f := streams.Frame{Header: streams.Current(), CameraID: camera}
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		if len(payload) > lim.MaxFrameBytes*4/3+4096 {
			return f, reject("too_large", "frame message of %d bytes", len(payload))
		}
		var m struct {
			Timestamp string `json:"timestamp"`
			Image     string `json:"image"`
		}
		if err := json.Unmarshal(payload, &m); err != nil {
			return f, reject("bad_json", "frame JSON: %v", err)
		}
		ts, err := parseTime(m.Timestamp)
		if err != nil {
			return f, err
		}
		img, err := decodeJPEG(m.Image, lim)
		if err != nil {
			return f, err
		}
		f.Timestamp, f.JPEG = ts, img
		return f, nil
	}
	if err := checkJPEG(payload, lim); err != nil {
		return f, err
	}
	f.Timestamp, f.JPEG = now.UTC(), payload
	return f, nil
}

// ParseCameraImage reads scenescape/image/camera/{camera}.
func ParseCameraImage(camera string, payload []byte, lim Limits) (streams.CameraImage, error) {
	ci := streams.CameraImage{Header: streams.Current(), CameraID: camera}
	if err := checkID("camera", camera); err != nil {
		return ci, err
	}
	if len(payload) > lim.MaxFrameBytes*4/3+4096 {
		return ci, reject("too_large", "image message of %d bytes", len(payload))
	}
	var m struct {
		Timestamp string `json:"timestamp"`
		ID        string `json:"id"`
		Image     string `json:"image"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return ci, reject("bad_json", "image JSON: %v", err)
	}
	ts, err := parseTime(m.Timestamp)
	if err != nil {
		return ci, err
	}
	img, err := decodeJPEG(m.Image, lim)
	if err != nil {
		return ci, err
	}
	ci.Timestamp, ci.JPEG = ts, img
	return ci, nil
}

type ssBox struct {
	X      *float64 `json:"x"`
	Y      *float64 `json:"y"`
	Width  *float64 `json:"width"`
	Height *float64 `json:"height"`
}

func (b *ssBox) box() (streams.Box, error) {
	if b == nil || b.X == nil || b.Y == nil || b.Width == nil || b.Height == nil {
		return streams.Box{}, reject("bad_box", "bounding_box_px needs x, y, width and height")
	}
	for _, v := range []float64{*b.X, *b.Y, *b.Width, *b.Height} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < -1e6 || v > 1e6 {
			return streams.Box{}, reject("bad_box", "bounding box value %v out of range", v)
		}
	}
	if *b.Width <= 0 || *b.Height <= 0 {
		return streams.Box{}, reject("bad_box", "bounding box of size %vx%v", *b.Width, *b.Height)
	}
	x, y := int(math.Round(*b.X)), int(math.Round(*b.Y))
	return streams.Box{x, y, x + int(math.Round(*b.Width)), y + int(math.Round(*b.Height))}, nil
}

type ssObject struct {
	Confidence float64 `json:"confidence"`
	Box        *ssBox  `json:"bounding_box_px"`
	Metadata   struct {
		Reid *struct {
			Embedding json.RawMessage `json:"embedding_vector"`
			Model     string          `json:"model_name"`
		} `json:"reid"`
	} `json:"metadata"`
	SubObjects struct {
		Face []ssObject `json:"face"`
	} `json:"sub_objects"`
}

func (o ssObject) external(lim Limits) (streams.ExternalObject, error) {
	box, err := o.Box.box()
	if err != nil {
		return streams.ExternalObject{}, err
	}
	e := streams.ExternalObject{Box: box, Confidence: float32(o.Confidence)}
	if r := o.Metadata.Reid; r != nil && len(r.Embedding) > 0 && string(r.Embedding) != "null" {
		v, err := ParseEmbedding(r.Embedding, lim.MaxVectorDim)
		if err != nil {
			return e, err
		}
		e.Embedding, e.ModelName = v, r.Model
	}
	return e, nil
}

// ParseDetections reads scenescape/data/camera/{camera}. Person objects
// keep their (body re-id) vectors only for the record: the pipeline never
// compares them with face vectors; face sub-objects are what it uses.
func ParseDetections(camera string, payload []byte, lim Limits) (streams.Detections, error) {
	d := streams.Detections{Header: streams.Current(), CameraID: camera}
	if err := checkID("camera", camera); err != nil {
		return d, err
	}
	if len(payload) > lim.MaxJSONBytes {
		return d, reject("too_large", "detections message of %d bytes over %d", len(payload), lim.MaxJSONBytes)
	}
	var m struct {
		ID        string                `json:"id"`
		Timestamp string                `json:"timestamp"`
		Objects   map[string][]ssObject `json:"objects"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return d, reject("bad_json", "detections JSON: %v", err)
	}
	ts, err := parseTime(m.Timestamp)
	if err != nil {
		return d, err
	}
	d.Timestamp = ts
	n := 0
	for category, objs := range m.Objects {
		for _, o := range objs {
			if n++; n > lim.MaxObjects {
				return d, reject("too_many_objects", "more than %d objects", lim.MaxObjects)
			}
			e, err := o.external(lim)
			if err != nil {
				return d, err
			}
			switch category {
			case "face":
				d.Faces = append(d.Faces, e)
			case "person":
				d.Persons = append(d.Persons, e)
			}
			for _, f := range o.SubObjects.Face {
				fe, err := f.external(lim)
				if err != nil {
					return d, err
				}
				d.Faces = append(d.Faces, fe)
			}
		}
	}
	return d, nil
}

// jsonString reads a JSON string. A string without escapes (base64 needs
// none) is taken as it is: a second JSON pass over kilobytes of base64 cost
// more than decoding it.
func jsonString(raw json.RawMessage) (string, bool) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw[1:n-1], '\\') < 0 && bytes.IndexByte(raw[1:n-1], '"') < 0 {
		return string(raw[1 : n-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// ParseEmbedding accepts every encoding SceneScape publishers use: base64 of
// little-endian float32s, a JSON list, a nested [[...]] list, or a JSON
// string holding one of those. Values must be finite.
func ParseEmbedding(raw json.RawMessage, maxDim int) ([]float32, error) {
	if s, ok := jsonString(raw); ok {
		t := strings.TrimSpace(s)
		if strings.HasPrefix(t, "[") {
			return ParseEmbedding(json.RawMessage(t), maxDim)
		}
		b, err := base64.StdEncoding.DecodeString(t)
		if err != nil {
			return nil, reject("bad_base64", "embedding is not base64: %v", err)
		}
		if len(b) == 0 || len(b)%4 != 0 {
			return nil, reject("bad_vector", "embedding of %d bytes is not float32s", len(b))
		}
		if len(b)/4 > maxDim {
			return nil, reject("bad_vector", "embedding of %d values over %d", len(b)/4, maxDim)
		}
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return v, checkFinite(v)
	}
	var flat []float64
	if err := json.Unmarshal(raw, &flat); err != nil {
		var nested [][]float64
		if err2 := json.Unmarshal(raw, &nested); err2 != nil || len(nested) != 1 {
			return nil, reject("bad_vector", "embedding is neither base64 nor a list of numbers")
		}
		flat = nested[0]
	}
	if len(flat) == 0 || len(flat) > maxDim {
		return nil, reject("bad_vector", "embedding of %d values (want 1..%d)", len(flat), maxDim)
	}
	v := make([]float32, len(flat))
	for i, x := range flat {
		v[i] = float32(x)
	}
	return v, checkFinite(v)
}

func checkFinite(v []float32) error {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return reject("bad_vector", "embedding holds a non-finite value")
		}
	}
	return nil
}

type ssRegionObject struct {
	ID           string           `json:"id"`
	Visibility   []string         `json:"visibility"`
	CameraBounds map[string]ssBox `json:"camera_bounds"`
}

func (o ssRegionObject) object(dwell float64) (streams.RegionObject, error) {
	if err := checkID("object", o.ID); err != nil {
		return streams.RegionObject{}, err
	}
	ro := streams.RegionObject{ID: o.ID, Cameras: o.Visibility, Dwell: dwell}
	for cam, b := range o.CameraBounds {
		box, err := b.box()
		if err != nil {
			continue // a bad per-camera box only loses that association
		}
		if ro.CameraBounds == nil {
			ro.CameraBounds = map[string]streams.Box{}
		}
		ro.CameraBounds[cam] = box
	}
	return ro, nil
}

// ParseRegionEvent reads scenescape/event/region/{scene}/{region}/objects.
func ParseRegionEvent(scene, region string, payload []byte, lim Limits) (streams.RegionEvent, error) {
	ev := streams.RegionEvent{Header: streams.Current(), SceneID: scene, RegionID: region}
	if err := errors.Join(checkID("scene", scene), checkID("region", region)); err != nil {
		return ev, reject("bad_topic", "%v", err)
	}
	if len(payload) > lim.MaxJSONBytes {
		return ev, reject("too_large", "region event of %d bytes over %d", len(payload), lim.MaxJSONBytes)
	}
	var m struct {
		Timestamp  string           `json:"timestamp"`
		SceneName  string           `json:"scene_name"`
		RegionName string           `json:"region_name"`
		Entered    []ssRegionObject `json:"entered"`
		Exited     []struct {
			Object ssRegionObject `json:"object"`
			Dwell  float64        `json:"dwell"`
		} `json:"exited"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return ev, reject("bad_json", "region event JSON: %v", err)
	}
	ts, err := parseTime(m.Timestamp)
	if err != nil {
		return ev, err
	}
	ev.Timestamp, ev.SceneName, ev.RegionName = ts, m.SceneName, m.RegionName
	if len(m.Entered)+len(m.Exited) > lim.MaxObjects {
		return ev, reject("too_many_objects", "more than %d objects", lim.MaxObjects)
	}
	for _, o := range m.Entered {
		ro, err := o.object(0)
		if err != nil {
			return ev, err
		}
		ev.Entered = append(ev.Entered, ro)
	}
	for _, x := range m.Exited {
		if math.IsNaN(x.Dwell) || x.Dwell < 0 {
			return ev, reject("bad_json", "dwell %v", x.Dwell)
		}
		ro, err := x.Object.object(x.Dwell)
		if err != nil {
			return ev, err
		}
		ev.Exited = append(ev.Exited, ro)
	}
	return ev, nil
}
