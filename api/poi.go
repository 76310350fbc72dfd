package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"

	"poi/internal/audit"
	"poi/internal/store"
	"poi/workers/embed"
)

// validSeverity: a POI is low, medium (the default) or high.
func validSeverity(s string) bool { return s == "low" || s == "medium" || s == "high" }

// isPOIID: anything that is not a POI id's form cannot name a POI, so it
// is a 404 without touching Redis.
func isPOIID(s string) bool { return store.IsPOIID(s) }

type referenceImage struct {
	EmbeddingID string `json:"embedding_id"`
	VectorDim   int    `json:"vector_dim"`
}

// enrolledImage says, per uploaded photo, which face was used or why none.
type enrolledImage struct {
	Index         int    `json:"index"`
	Filename      string `json:"filename"`
	FacesDetected int    `json:"faces_detected"`
	FaceBBox      []int  `json:"face_bbox,omitempty"`
	EmbeddingID   string `json:"embedding_id,omitempty"`
	Rejected      string `json:"rejected,omitempty"`
	// PhotoURL serves the aligned face the engine used for this photo.
	PhotoURL string `json:"photo_url,omitempty"`
}

type poiBody struct {
	POIID           string           `json:"poi_id"`
	Severity        string           `json:"severity"`
	Notes           string           `json:"notes"`
	ReferenceImages []referenceImage `json:"reference_images,omitempty"`
	Status          string           `json:"status"`
	CreatedAt       string           `json:"created_at"`
	// ExpiresAt is an addition: when the POI expires (absent: never).
	ExpiresAt string `json:"expires_at,omitempty"`
	// Images is an addition to the seed: what happened to each photo.
	Images []enrolledImage `json:"images,omitempty"`
}

// uploadError maps an embedding failure of one uploaded photo to a status.
func uploadError(err error) (int, string) {
	var ee *embed.Error
	if errors.As(err, &ee) {
		switch ee.Code {
		case embed.CodeTooLarge:
			return http.StatusRequestEntityTooLarge, "image too large"
		case embed.CodeBadImage, embed.CodeUnsupported:
			return http.StatusUnprocessableEntity, "not a usable image"
		case embed.CodeNoFace:
			return http.StatusUnprocessableEntity, "no face"
		}
	}
	if errors.Is(err, embed.ErrNoWorker) || errors.Is(err, embed.ErrTimeout) {
		return http.StatusServiceUnavailable, "embedding unavailable"
	}
	return http.StatusInternalServerError, "embedding failed"
}

// readUpload reads one multipart file within the per-image limit.
func (s *Server) readUpload(fh *multipart.FileHeader) ([]byte, error) {
	limit := s.deps.Config.API.MaxImageBytes
	if fh.Size > limit {
		return nil, fmt.Errorf("%q is %d bytes, over the %d-byte limit", fh.Filename, fh.Size, limit)
	}
	f, err := fh.Open()
	if err != nil {
		return nil, fmt.Errorf("%q: %w", fh.Filename, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%q: %w", fh.Filename, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%q is over the %d-byte limit", fh.Filename, limit)
	}
	return b, nil
}

// parseMultipart parses the form within the request body limit.
func (s *Server) parseMultipart(c *gin.Context, maxFiles int) bool {
	limit := int64(maxFiles)*s.deps.Config.API.MaxImageBytes + 1<<20
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	if err := c.Request.ParseMultipartForm(32 << 20); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(c, http.StatusRequestEntityTooLarge, "request too large", fmt.Sprintf("the request body is over %d bytes", limit))
			return false
		}
		fail(c, http.StatusBadRequest, "bad multipart form", err.Error())
		return false
	}
	return true
}

func formValue(c *gin.Context, names ...string) string {
	for _, n := range names {
		if v, ok := c.Request.MultipartForm.Value[n]; ok && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func (s *Server) createPOI(c *gin.Context) {
	maxImages := s.deps.Config.API.MaxImages
	if !s.parseMultipart(c, maxImages) {
		return
	}
	files := c.Request.MultipartForm.File["images"]
	trackID := formValue(c, "track_id")
	if len(files) == 0 && trackID == "" || len(files) > maxImages {
		fail(c, http.StatusUnprocessableEntity, "invalid images", fmt.Sprintf("images: %d files given, want 1 to %d (or none with a track_id)", len(files), maxImages))
		return
	}
	severity := formValue(c, "severity")
	if severity == "" {
		severity = "medium"
	}
	if !validSeverity(severity) {
		fail(c, http.StatusUnprocessableEntity, "invalid severity", fmt.Sprintf("severity: %q is not low, medium or high", severity))
		return
	}
	notes := formValue(c, "description", "notes")
	if len(notes) > 4096 {
		fail(c, http.StatusUnprocessableEntity, "invalid notes", "description: over 4096 characters")
		return
	}

	id, err := store.NewPOIID()
	if err != nil {
		s.internal(c, "enroll", err)
		return
	}
	poi := store.POI{ID: id, Severity: severity, Notes: notes, Status: "active", CreatedAt: time.Now().UTC()}
	body := poiBody{POIID: id, Severity: severity, Notes: notes, Status: "active", CreatedAt: poi.CreatedAt.Format(time.RFC3339)}
	up, ok := s.embedUploads(c, files)
	if !ok {
		return
	}
	poi.Model = up.model
	for _, r := range up.refs {
		eid := store.EmbeddingID(id, len(poi.Refs)+1)
		r.EmbeddingID = eid
		poi.Refs = append(poi.Refs, r)
		body.ReferenceImages = append(body.ReferenceImages, referenceImage{EmbeddingID: eid, VectorDim: len(r.Vector)})
	}
	body.Images = up.report(id, func(i int) string { return poi.Refs[i].EmbeddingID })
	if trackID != "" {
		refs, err := s.trackRefs(c.Request.Context(), trackID)
		if errors.Is(err, errTrackGone) {
			fail(c, http.StatusNotFound, "track not found", fmt.Sprintf("%v: enroll from photos instead (samples are kept for pipeline.retention)", err))
			return
		}
		if err != nil {
			s.internal(c, "enroll from track "+trackID, err)
			return
		}
		if poi.Model == "" {
			poi.Model = s.deps.POI.Index().Model().Name
		}
		for _, r := range refs {
			r.EmbeddingID = store.EmbeddingID(id, len(poi.Refs)+1)
			poi.Refs = append(poi.Refs, r)
			body.ReferenceImages = append(body.ReferenceImages, referenceImage{EmbeddingID: r.EmbeddingID, VectorDim: len(r.Vector)})
		}
	}
	if len(poi.Refs) == 0 {
		fail(c, http.StatusUnprocessableEntity, "no face", "no uploaded image holds a detectable face")
		return
	}
	if poi.Model != s.deps.POI.Index().Model().Name {
		fail(c, http.StatusServiceUnavailable, "model mismatch", fmt.Sprintf("embedding worker uses %q, this API serves %q", poi.Model, s.deps.POI.Index().Model().Name))
		return
	}
	stored, err := s.enrol(c.Request.Context(), poi)
	if err != nil {
		s.internal(c, "enroll "+id, err)
		return
	}
	details := map[string]any{"poi_id": stored.ID, "severity": severity, "images": len(files), "references": len(poi.Refs)}
	if trackID != "" {
		details["track_id"] = trackID
	}
	s.audit(c, audit.POIEnroll, details)
	c.JSON(http.StatusCreated, body.renamed(stored))
}

// uploads are the faces found in uploaded photos.
type uploads struct {
	model string
	// refs have no embedding id yet; images[i] reports refs[i], rejected
	// reports the photos without a face (by index of upload).
	refs     []store.Ref
	images   []enrolledImage
	rejected []enrolledImage
}

// report merges the report of the used and the rejected photos in upload
// order, naming each used one by embID(its index in refs).
func (u uploads) report(poi string, embID func(int) string) []enrolledImage {
	out := make([]enrolledImage, 0, len(u.images)+len(u.rejected))
	i, j := 0, 0
	for i < len(u.images) || j < len(u.rejected) {
		if j == len(u.rejected) || i < len(u.images) && u.images[i].Index < u.rejected[j].Index {
			img := u.images[i]
			img.EmbeddingID = embID(i)
			img.PhotoURL = photoURL(poi, img.EmbeddingID)
			out = append(out, img)
			i++
			continue
		}
		out = append(out, u.rejected[j])
		j++
	}
	return out
}

// embedUploads finds the largest face of each photo. A photo without a
// face is reported, not refused; any other failure is answered here (ok
// false).
func (s *Server) embedUploads(c *gin.Context, files []*multipart.FileHeader) (uploads, bool) {
	var u uploads
	for i, fh := range files {
		img := enrolledImage{Index: i, Filename: fh.Filename}
		data, err := s.readUpload(fh)
		if err != nil {
			fail(c, http.StatusRequestEntityTooLarge, "image too large", "images["+fmt.Sprint(i)+"]: "+err.Error())
			return u, false
		}
		rep, err := s.deps.Embed.Do(c.Request.Context(), data, embed.Params{Mode: embed.ModeLargest, Thumbs: true})
		if err != nil {
			code, msg := uploadError(err)
			if code == http.StatusUnprocessableEntity && msg == "no face" {
				img.Rejected = "no face found"
				u.rejected = append(u.rejected, img)
				continue
			}
			fail(c, code, msg, fmt.Sprintf("images[%d] %q: %v", i, fh.Filename, err))
			return u, false
		}
		used := rep.Faces[rep.Used]
		u.model = rep.Model
		u.refs = append(u.refs, store.Ref{Vector: used.Embedding, Photo: used.Thumb})
		img.FacesDetected, img.FaceBBox = len(rep.Faces), used.Box[:]
		u.images = append(u.images, img)
	}
	return u, true
}

func toBody(p store.POI) poiBody {
	b := poiBody{POIID: p.ID, Severity: p.Severity, Notes: p.Notes, Status: p.Status, CreatedAt: p.CreatedAt.UTC().Format(time.RFC3339)}
	if !p.ExpiresAt.IsZero() {
		b.ExpiresAt = p.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return b
}

func (s *Server) listPOIs(c *gin.Context) {
	pois, err := s.deps.Store.ListPOIs(c.Request.Context(), false)
	if err != nil {
		s.internal(c, "list pois", err)
		return
	}
	out := make([]poiBody, 0, len(pois))
	for _, p := range pois {
		out = append(out, toBody(p))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) poiParam(c *gin.Context) (string, bool) {
	id := c.Param("poi_id")
	if !isPOIID(id) {
		fail(c, http.StatusNotFound, "poi not found", fmt.Sprintf("no POI %q", id))
		return "", false
	}
	return id, true
}

func (s *Server) getPOI(c *gin.Context) {
	id, ok := s.poiParam(c)
	if !ok {
		return
	}
	p, err := s.deps.Store.GetPOI(c.Request.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "poi not found", fmt.Sprintf("no POI %q", id))
		return
	}
	if err != nil {
		s.internal(c, "get "+id, err)
		return
	}
	body := toBody(p)
	for _, r := range p.Refs {
		body.ReferenceImages = append(body.ReferenceImages, referenceImage{EmbeddingID: r.EmbeddingID, VectorDim: len(r.Vector)})
	}
	c.JSON(http.StatusOK, body)
}

// internal logs the cause and answers without leaking it: 503 when a
// dependency (Redis, NATS) is unreachable, so clients know to retry, else 500.
func (s *Server) internal(c *gin.Context, what string, err error) {
	s.deps.Log.Error(what, "request_id", c.GetString(requestIDHeader), "error", err)
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrTimeout) {
		// Which one is named, so that an operator knows what to restart:
		// the same probe as GET /status, bounded the same way.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), s.deps.Config.API.DependencyTimeout)
		defer cancel()
		which := "a backing service is unreachable"
		if down := s.down(ctx); len(down) > 0 {
			which = strings.Join(down, " and ") + " unreachable"
		}
		fail(c, http.StatusServiceUnavailable, "dependency unavailable", what+" failed: "+which+" (request "+c.GetString(requestIDHeader)+")")
		return
	}
	fail(c, http.StatusInternalServerError, "internal error", what+" failed (request "+c.GetString(requestIDHeader)+")")
}
