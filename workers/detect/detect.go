// Package detect is the detection stage: frames (and SceneScape detections)
// become observations, the faces of one frame with boxes and landmarks. It
// runs the cheap detector on every frame and leaves the expensive embedder
// to the tracker, which asks only when a track needs a vector; upstream
// vectors already in our model's space are passed through as they are.
package detect

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/face"
	"poi/internal/imaging"
	"poi/internal/metrics"
	"poi/internal/store"
	"poi/streams"
	"poi/workers/pool"
)

// Stage holds what the detect and frames handlers need.
type Stage struct {
	engine *face.Engine
	limits imaging.Limits
	js     jetstream.JetStream
	store  *store.Store
	m      *metrics.Metrics
	log    *slog.Logger
}

// New returns the stage.
func New(e *face.Engine, lim imaging.Limits, js jetstream.JetStream, st *store.Store, m *metrics.Metrics, log *slog.Logger) *Stage {
	return &Stage{engine: e, limits: lim, js: js, store: st, m: m, log: log.With("stage", "detect")}
}

// Handle is the pool handler of the detect consumer.
func (s *Stage) Handle(ctx context.Context, msg jetstream.Msg) error {
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("detect: metadata: %w", err)
	}
	var obs streams.Observation
	switch {
	case strings.HasPrefix(msg.Subject(), streams.IngestFrame+"."):
		var f streams.Frame
		if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &f); err != nil {
			return pool.Permanent("bad_envelope", err)
		}
		obs, err = s.frame(f)
	case strings.HasPrefix(msg.Subject(), streams.IngestSceneScape+"."):
		var d streams.Detections
		if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &d); err != nil {
			return pool.Permanent("bad_envelope", err)
		}
		obs, err = s.sceneScape(ctx, d)
	default:
		return pool.Permanent("bad_subject", fmt.Errorf("detect: unexpected subject %s", msg.Subject()))
	}
	if err != nil {
		return err
	}
	if len(obs.Faces) == 0 {
		return nil
	}
	obs.FrameNumber = meta.Sequence.Stream
	s.m.FacesSeen.Add(float64(len(obs.Faces)))
	out, err := streams.NewMsg(streams.Subject(streams.ObservationsSubj, obs.CameraID), &obs)
	if err != nil {
		return fmt.Errorf("detect: %w", err)
	}
	// Derived from the frame's place in POI_INGEST: a redelivered frame
	// produces the same id and is stored once.
	out.Header.Set(jetstream.MsgIDHeader, "obs-"+strconv.FormatUint(meta.Sequence.Stream, 10))
	if _, err := s.js.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("detect: publish observation: %w", err)
	}
	return nil
}

// decodeErr classifies decoding failures: a bad image will not decode on a
// second try.
func decodeErr(err error) error {
	for _, e := range []error{imaging.ErrEmpty, imaging.ErrTooLarge, imaging.ErrTooManyPixels, imaging.ErrUnsupportedFormat, imaging.ErrCorrupt} {
		if errors.Is(err, e) {
			return pool.Permanent("bad_image", err)
		}
	}
	return err
}

func toObserved(f face.Face) streams.ObservedFace {
	o := streams.ObservedFace{Box: streams.Box{f.Box.Min.X, f.Box.Min.Y, f.Box.Max.X, f.Box.Max.Y}, Score: f.Score}
	for i, p := range f.Landmarks {
		o.Landmarks[i] = [2]float64{p.X, p.Y}
	}
	return o
}

// detectJPEG finds faces on a reduced-scale decode: all the 320x240 detector
// can use, at a fraction of a full decode's cost.
func (s *Stage) detectJPEG(data []byte) ([]face.Face, error) {
	w, h := s.engine.DetectorSize()
	small, scale, err := imaging.DecodeForSize(data, s.limits, w, h)
	if err != nil {
		return nil, decodeErr(fmt.Errorf("detect: %w", err))
	}
	faces, err := s.engine.Detect(small, scale)
	if err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	return faces, nil
}

func (s *Stage) frame(f streams.Frame) (streams.Observation, error) {
	obs := streams.Observation{Header: streams.Current(), CameraID: f.CameraID, Timestamp: f.Timestamp}
	faces, err := s.detectJPEG(f.JPEG)
	if err != nil {
		return obs, err
	}
	for _, fc := range faces {
		obs.Faces = append(obs.Faces, toObserved(fc))
	}
	if len(obs.Faces) > 0 {
		obs.FrameJPEG = f.JPEG
	}
	return obs, nil
}

// sceneScape handles upstream detections. Face vectors of our model pass
// through; other faces are located on the camera's latest frame and left
// for the tracker to embed; person boxes without face sub-objects are
// searched for faces with our detector. Body re-id vectors are dropped.
func (s *Stage) sceneScape(ctx context.Context, d streams.Detections) (streams.Observation, error) {
	obs := streams.Observation{Header: streams.Current(), CameraID: d.CameraID, Timestamp: d.Timestamp}
	model := s.engine.Model()
	needFrame := len(d.Persons) > 0
	for _, f := range d.Faces {
		o := streams.ObservedFace{Box: f.Box, Score: f.Confidence}
		if f.ModelName == model.Name && len(f.Embedding) == model.Dim {
			o.Embedding, o.Model = f.Embedding, model.Name
		} else {
			needFrame = true
		}
		obs.Faces = append(obs.Faces, o)
	}
	if !needFrame {
		return obs, nil
	}
	frame, err := s.store.CameraLatest(ctx, d.CameraID)
	if errors.Is(err, store.ErrNotFound) {
		s.m.Rejected.WithLabelValues("detect", "no_frame").Inc()
		s.log.Debug("no recent frame for scenescape detections", "camera", d.CameraID)
		return streams.Observation{}, nil
	}
	if err != nil {
		return obs, err
	}
	obs.FrameJPEG = frame
	if len(d.Faces) == 0 {
		faces, err := s.detectJPEG(frame)
		if err != nil {
			return obs, err
		}
		for _, fc := range faces {
			if insideAny(fc.Box, d.Persons) {
				obs.Faces = append(obs.Faces, toObserved(fc))
			}
		}
	}
	if len(obs.Faces) == 0 {
		obs.FrameJPEG = nil
	}
	return obs, nil
}

func insideAny(r image.Rectangle, persons []streams.ExternalObject) bool {
	c := image.Pt((r.Min.X+r.Max.X)/2, (r.Min.Y+r.Max.Y)/2)
	for _, p := range persons {
		if c.In(image.Rect(p.Box[0], p.Box[1], p.Box[2], p.Box[3])) {
			return true
		}
	}
	return false
}

// HandleImage is the pool handler of the frames consumer: SceneScape camera
// images become the camera's latest frame.
func (s *Stage) HandleImage(ctx context.Context, msg jetstream.Msg) error {
	var ci streams.CameraImage
	if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &ci); err != nil {
		return pool.Permanent("bad_envelope", err)
	}
	return s.store.SetCameraLatest(ctx, ci.CameraID, ci.JPEG)
}
