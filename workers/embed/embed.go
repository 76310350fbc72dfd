// Package embed is the embedding service: face engine work offered on NATS
// request-reply (queue group "embed"), so that API processes and the tracker
// need not load models. In the all-in-one process the API goes through the
// same subject, so there is one code path.
//
// A request carries the encoded image as its body (no base64) and its
// parameters as JSON in the Poi-Embed header; the reply is JSON.
package embed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	xdraw "golang.org/x/image/draw"

	"poi/internal/face"
	"poi/internal/imaging"
	"poi/internal/metrics"
	"poi/streams"
)

// Modes of a request.
const (
	// ModeLargest embeds the largest face (enrollment and search photos).
	ModeLargest = "largest"
	// ModeAll embeds every face.
	ModeAll = "all"
	// ModeFaces embeds the faces given in the request (boxes from our
	// detector or an upstream one).
	ModeFaces = "faces"
	// ModeDetect finds faces (boxes, landmarks, scores) on a reduced-scale
	// decode, without embedding them: the tracker's detection requests.
	ModeDetect = "detect"
	// ModeInfo only names the model (processes without models learn the
	// embedding space they serve from it).
	ModeInfo = "info"
)

// Error codes of a reply.
const (
	CodeNoFace      = "no_face"
	CodeBadImage    = "bad_image"
	CodeTooLarge    = "too_large"
	CodeUnsupported = "unsupported_format"
	CodeBadRequest  = "bad_request"
	CodeInternal    = "internal"
)

const paramsHeader = "Poi-Embed"

// deadlineHeader carries the time (Unix nanoseconds) after which the
// requester no longer waits for the answer.
const deadlineHeader = "Poi-Deadline"

// FaceIn is a face to embed (ModeFaces).
type FaceIn struct {
	Box streams.Box `json:"box"`
	// Landmarks are the five alignment points; all zero when unknown (the
	// service then finds them).
	Landmarks [5][2]float64 `json:"landmarks"`
}

// Params are a request's parameters.
type Params struct {
	Mode   string   `json:"mode"`
	Faces  []FaceIn `json:"faces,omitempty"`
	Thumbs bool     `json:"thumbs,omitempty"`
}

// FaceOut is one embedded (or, in ModeLargest, only detected) face.
type FaceOut struct {
	Box       streams.Box    `json:"box"`
	Score     float32        `json:"score"`
	Landmarks [5][2]float64  `json:"landmarks"`
	Embedding streams.Vector `json:"embedding,omitempty"`
	Thumb     []byte         `json:"thumb,omitempty"`
}

// Reply is the service's answer.
type Reply struct {
	Model string    `json:"model"`
	Dim   int       `json:"dim"`
	Faces []FaceOut `json:"faces"`
	// Used is the index of the embedded face in ModeLargest.
	Used   int    `json:"used"`
	Code   string `json:"code,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Error is a failure the service reported.
type Error struct {
	Code   string
	Detail string
}

func (e *Error) Error() string { return e.Code + ": " + e.Detail }

// Client errors.
var (
	// ErrNoWorker: no embedding service is subscribed.
	ErrNoWorker = errors.New("no embedding worker available")
	// ErrTimeout: the service did not answer in time.
	ErrTimeout = errors.New("embedding worker timed out")
)

// Service answers embedding requests with a face engine.
type Service struct {
	engine *face.Engine
	limits imaging.Limits
	m      *metrics.Metrics
	log    *slog.Logger
	sem    chan struct{}
	sub    *nats.Subscription
	wg     sync.WaitGroup
}

// NewService returns a service; concurrency bounds requests handled at once.
func NewService(e *face.Engine, lim imaging.Limits, concurrency int, m *metrics.Metrics, log *slog.Logger) *Service {
	return &Service{engine: e, limits: lim, m: m, log: log.With("component", "embed"), sem: make(chan struct{}, max(1, concurrency))}
}

// Subscribe joins the queue group of subject (streams.EmbedService or
// streams.DetectService); call it before Run so the service answers by the
// time the process reports ready.
func (s *Service) Subscribe(nc *nats.Conn, subject, queue string) error {
	sub, err := nc.QueueSubscribe(subject, queue, func(msg *nats.Msg) {
		s.sem <- struct{}{}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.sem; s.wg.Done() }()
			s.serve(msg)
		}()
	})
	if err != nil {
		return fmt.Errorf("embed service subscribe %s: %w", subject, err)
	}
	s.sub = sub
	s.log.Info("face service ready", "subject", subject, "model", s.engine.Model().Name, "dim", s.engine.Model().Dim)
	return nil
}

// Run serves until ctx ends, then drains the subscription so that requests
// in hand are answered.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	if err := s.sub.Drain(); err != nil {
		s.log.Warn("embed drain", "error", err)
	}
	for s.sub.IsValid() {
		time.Sleep(10 * time.Millisecond)
	}
	s.wg.Wait()
	return nil
}

func (s *Service) serve(msg *nats.Msg) {
	start := time.Now()
	s.m.Received.WithLabelValues("embed").Inc()
	if late, ok := abandoned(msg.Header.Get(deadlineHeader), start); ok {
		// Queued past its requester's deadline: nobody reads the answer.
		// The deadline is the requester's clock: one far behind this
		// machine's shows here, as late requests by the same amount.
		s.m.Rejected.WithLabelValues("embed", "abandoned").Inc()
		s.log.Info("request dropped: its requester stopped waiting", "subject", msg.Subject, "late", late)
		return
	}
	var p Params
	rep := Reply{Model: s.engine.Model().Name, Dim: s.engine.Model().Dim}
	if err := json.Unmarshal([]byte(msg.Header.Get(paramsHeader)), &p); err != nil {
		rep.Code, rep.Detail = CodeBadRequest, "parameters: "+err.Error()
	} else {
		s.handle(p, msg.Data, &rep)
	}
	if rep.Code != "" {
		s.m.Rejected.WithLabelValues("embed", rep.Code).Inc()
	} else {
		s.m.Processed.WithLabelValues("embed").Inc()
	}
	s.m.Latency.WithLabelValues("embed").Observe(time.Since(start).Seconds())
	b, _ := json.Marshal(rep)
	if err := msg.Respond(b); err != nil {
		s.log.Warn("embed reply", "error", err)
	}
}

// abandoned reports whether a request's deadline header (Unix nanoseconds;
// absent from older clients) has passed at now, and by how much.
func abandoned(header string, now time.Time) (time.Duration, bool) {
	ns, err := strconv.ParseInt(header, 10, 64)
	if err != nil || now.UnixNano() <= ns {
		return 0, false
	}
	return time.Duration(now.UnixNano() - ns), true
}

func codeOf(err error) string {
	switch {
	case errors.Is(err, face.ErrNoFace):
		return CodeNoFace
	case errors.Is(err, imaging.ErrTooLarge), errors.Is(err, imaging.ErrTooManyPixels):
		return CodeTooLarge
	case errors.Is(err, imaging.ErrUnsupportedFormat):
		return CodeUnsupported
	case errors.Is(err, imaging.ErrCorrupt), errors.Is(err, imaging.ErrEmpty):
		return CodeBadImage
	}
	return CodeInternal
}

func (s *Service) handle(p Params, data []byte, rep *Reply) {
	fail := func(err error) {
		rep.Code, rep.Detail = codeOf(err), err.Error()
		if rep.Code == CodeInternal {
			s.log.Error("embed", "error", err)
		}
	}
	var faces []face.Face
	var err error
	switch p.Mode {
	case ModeLargest:
		faces, rep.Used, err = s.engine.AnalyzeLargest(data)
	case ModeAll:
		faces, err = s.engine.Analyze(data)
	case ModeFaces:
		faces, err = s.embedGiven(data, p.Faces)
	case ModeDetect:
		faces, err = s.detect(data)
	case ModeInfo:
		return
	default:
		err = fmt.Errorf("mode %q", p.Mode)
		rep.Code, rep.Detail = CodeBadRequest, err.Error()
		return
	}
	if err != nil {
		fail(err)
		return
	}
	var full *image.RGBA
	if p.Thumbs && len(faces) > 0 {
		if full, err = imaging.Decode(data, s.limits); err != nil {
			fail(err)
			return
		}
	}
	for _, f := range faces {
		out := FaceOut{Box: toBox(f.Box), Score: f.Score, Embedding: f.Embedding}
		for i, pt := range f.Landmarks {
			out.Landmarks[i] = [2]float64{pt.X, pt.Y}
		}
		if f.Embedding != nil {
			s.m.Embeddings.Inc()
		}
		if full != nil && (f.Embedding != nil || p.Mode != ModeLargest) {
			out.Thumb, _ = Thumbnail(full, f.Box)
		}
		rep.Faces = append(rep.Faces, out)
	}
}

func (s *Service) embedGiven(data []byte, in []FaceIn) ([]face.Face, error) {
	if len(in) == 0 {
		return nil, nil
	}
	img, err := imaging.Decode(data, s.limits)
	if err != nil {
		return nil, err
	}
	faces := make([]face.Face, len(in))
	for i, f := range in {
		faces[i].Box = image.Rect(f.Box[0], f.Box[1], f.Box[2], f.Box[3]).Intersect(img.Rect)
		if faces[i].Box.Empty() {
			return nil, fmt.Errorf("face %d box %v outside the %v image: %w", i, f.Box, img.Rect.Size(), imaging.ErrCorrupt)
		}
		for j, pt := range f.Landmarks {
			faces[i].Landmarks[j] = face.Point{X: pt[0], Y: pt[1]}
		}
	}
	vecs, err := s.engine.Embed(img, faces)
	if err != nil {
		return nil, err
	}
	for i := range faces {
		faces[i].Embedding = vecs[i]
	}
	return faces, nil
}

// detect finds faces on a reduced-scale decode: all the detector's input
// size can use, at a fraction of a full decode's cost.
func (s *Service) detect(data []byte) ([]face.Face, error) {
	w, h := s.engine.DetectorSize()
	small, scale, err := imaging.DecodeForSize(data, s.limits, w, h)
	if err != nil {
		return nil, err
	}
	return s.engine.Detect(small, scale)
}

func toBox(r image.Rectangle) streams.Box {
	return streams.Box{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y}
}

// thumbSize is the longest side of a face thumbnail.
const thumbSize = 160

// Thumbnail crops the face with a margin and scales it to a small JPEG.
func Thumbnail(img *image.RGBA, box image.Rectangle) ([]byte, error) {
	m := max(box.Dx(), box.Dy()) / 4
	r := box.Inset(-m).Intersect(img.Rect)
	if r.Empty() {
		return nil, fmt.Errorf("thumbnail: box %v outside image", box)
	}
	w, h := r.Dx(), r.Dy()
	if k := float64(thumbSize) / float64(max(w, h)); k < 1 {
		w, h = max(1, int(float64(w)*k)), max(1, int(float64(h)*k))
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.ApproxBiLinear.Scale(dst, dst.Rect, img, r, xdraw.Src, nil)
	return imaging.EncodeJPEG(dst, 85)
}

// Client asks the service over NATS.
type Client struct {
	nc      *nats.Conn
	subject string
	timeout time.Duration
	resend  time.Duration
	resent  prometheus.Counter
}

// NewClient returns a client of the service on subject whose requests wait
// at most timeout, and are sent again each time one goes unanswered for
// resendAfter (0: never). resent, if not nil, counts those resends.
func NewClient(nc *nats.Conn, subject string, timeout, resendAfter time.Duration, resent prometheus.Counter) *Client {
	if resendAfter <= 0 || resendAfter > timeout {
		resendAfter = timeout
	}
	return &Client{nc: nc, subject: subject, timeout: timeout, resend: resendAfter, resent: resent}
}

// Do sends one request. Service-side failures come back as *Error.
//
// A request or its reply routed through a NATS server that dies is lost
// without a word (core NATS is at most once): an attempt unanswered for the
// resend interval is sent again, with a new reply inbox, until the whole
// timeout has passed. The services are idempotent, so a slow first answer
// only costs the work of the second; the deadline the request carries lets
// the service drop a copy nobody waits for any more.
func (c *Client) Do(ctx context.Context, img []byte, p Params) (Reply, error) {
	hdr, err := json.Marshal(p)
	if err != nil {
		return Reply{}, fmt.Errorf("embed request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	for attempt := 0; ; attempt++ {
		if attempt > 0 && c.resent != nil {
			c.resent.Inc()
		}
		msg := nats.NewMsg(c.subject)
		msg.Header.Set(paramsHeader, string(hdr))
		msg.Header.Set(deadlineHeader, strconv.FormatInt(deadline.UnixNano(), 10))
		msg.Data = img
		actx, acancel := context.WithTimeout(ctx, c.resend)
		resp, err := c.nc.RequestMsgWithContext(actx, msg)
		acancel()
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return Reply{}, ErrNoWorker
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			if ctx.Err() == nil {
				continue // this attempt went unanswered; the request still has time
			}
			return Reply{}, ErrTimeout
		case err != nil:
			return Reply{}, fmt.Errorf("embed request: %w", err)
		}
		var rep Reply
		if err := json.Unmarshal(resp.Data, &rep); err != nil {
			return Reply{}, fmt.Errorf("embed reply: %w", err)
		}
		if rep.Code != "" {
			return rep, &Error{Code: rep.Code, Detail: rep.Detail}
		}
		return rep, nil
	}
}

// Info asks a worker which model it embeds with, retrying until one answers
// or ctx ends.
func (c *Client) Info(ctx context.Context) (Reply, error) {
	for {
		rep, err := c.Do(ctx, nil, Params{Mode: ModeInfo})
		if err == nil {
			return rep, nil
		}
		if !errors.Is(err, ErrNoWorker) && !errors.Is(err, ErrTimeout) {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return rep, fmt.Errorf("embedding model info: %w (last: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
