package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"poi/internal/audit"
	"poi/internal/outbox"
	"poi/internal/store"
)

// refsChanged hands a POI's new set of references to this process's
// replica and, through the outbox, to every other one. A failed publish is
// not the client's failure: the outbox entry is in Redis and the relay
// publishes it.
func (s *Server) refsChanged(c *gin.Context, p store.POI) error {
	if err := s.deps.POI.Apply(outbox.EnrolledEvent(p)); err != nil {
		return fmt.Errorf("apply references of %s: %w", p.ID, err)
	}
	if err := s.deps.Outbox.Publish(c.Request.Context(), p); err != nil {
		s.deps.Log.Warn("reference change not published yet; the outbox relay will", "poi_id", p.ID, "error", err)
	}
	return nil
}

func (s *Server) removeRef(c *gin.Context, poi, embID string) (store.POI, error) {
	p, err := s.deps.Store.RemoveRef(c.Request.Context(), poi, embID)
	if err != nil {
		return store.POI{}, err
	}
	return p, s.refsChanged(c, p)
}

// poiPatch is the body of PATCH /api/v1/poi/{poi_id}; absent fields stay.
type poiPatch struct {
	Severity *string `json:"severity"`
	Notes    *string `json:"notes"`
	Status   *string `json:"status"`
	// ExpiresAt is an RFC 3339 time, or null / "" to clear it.
	ExpiresAt json.RawMessage `json:"expires_at"`
}

// parse checks the patch and turns it into a store update.
func (b poiPatch) parse(now time.Time) (store.POIUpdate, string) {
	u := store.POIUpdate{Severity: b.Severity, Notes: b.Notes, Status: b.Status}
	if b.Severity != nil && !validSeverity(*b.Severity) {
		return u, fmt.Sprintf("severity: %q is not low, medium or high", *b.Severity)
	}
	if b.Notes != nil && len(*b.Notes) > maxNoteLen {
		return u, fmt.Sprintf("notes: over %d characters", maxNoteLen)
	}
	if b.Status != nil && *b.Status != store.StatusActive && *b.Status != store.StatusInactive {
		return u, fmt.Sprintf("status: %q is not active or inactive", *b.Status)
	}
	if len(b.ExpiresAt) > 0 {
		var t time.Time
		if raw := bytes.TrimSpace(b.ExpiresAt); !bytes.Equal(raw, []byte("null")) && !bytes.Equal(raw, []byte(`""`)) {
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return u, "expires_at: want an RFC 3339 time as a string, or null"
			}
			var err error
			if t, err = time.Parse(time.RFC3339, v); err != nil {
				return u, fmt.Sprintf("expires_at %q is not an RFC 3339 time", v)
			}
			if !t.After(now) {
				return u, fmt.Sprintf("expires_at %s is not in the future", v)
			}
		}
		u.ExpiresAt = &t
	}
	if u.Severity == nil && u.Notes == nil && u.Status == nil && u.ExpiresAt == nil {
		return u, "nothing to change: give severity, notes, status or expires_at"
	}
	return u, ""
}

func (s *Server) updatePOI(c *gin.Context) {
	id, ok := s.poiParam(c)
	if !ok {
		return
	}
	var b poiPatch
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		fail(c, http.StatusBadRequest, "bad poi change", "the body must be a JSON object {severity, notes, status, expires_at}: "+err.Error())
		return
	}
	u, bad := b.parse(time.Now())
	if bad != "" {
		fail(c, http.StatusBadRequest, "bad poi change", bad)
		return
	}
	if err := s.deps.Store.UpdatePOI(c.Request.Context(), id, u); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			fail(c, http.StatusNotFound, "poi not found", fmt.Sprintf("no POI %q", id))
			return
		}
		s.internal(c, "update "+id, err)
		return
	}
	var changed []string
	for name, set := range map[string]bool{"severity": u.Severity != nil, "notes": u.Notes != nil, "status": u.Status != nil, "expires_at": u.ExpiresAt != nil} {
		if set {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)
	details := map[string]any{"poi_id": id, "fields": strings.Join(changed, ",")}
	if u.Status != nil {
		details["status"] = *u.Status
	}
	s.audit(c, audit.POIUpdate, details)
	s.getPOI(c)
}

func (s *Server) addImages(c *gin.Context) {
	id, ok := s.poiParam(c)
	if !ok {
		return
	}
	maxPhotos := s.deps.Config.Review.MaxPhotos
	if !s.parseMultipart(c, maxPhotos) {
		return
	}
	files := c.Request.MultipartForm.File["images"]
	if len(files) == 0 || len(files) > maxPhotos {
		fail(c, http.StatusUnprocessableEntity, "invalid images", fmt.Sprintf("images: %d files given, want 1 to %d", len(files), maxPhotos))
		return
	}
	ctx := c.Request.Context()
	if _, err := s.deps.Store.GetPOI(ctx, id); errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "poi not found", fmt.Sprintf("no POI %q", id))
		return
	} else if err != nil {
		s.internal(c, "add images to "+id, err)
		return
	}
	up, ok := s.embedUploads(c, files)
	if !ok {
		return
	}
	if len(up.refs) == 0 {
		fail(c, http.StatusUnprocessableEntity, "no face", "no uploaded image holds a detectable face")
		return
	}
	if up.model != s.deps.POI.Index().Model().Name {
		fail(c, http.StatusServiceUnavailable, "model mismatch", fmt.Sprintf("embedding worker uses %q, this API serves %q", up.model, s.deps.POI.Index().Model().Name))
		return
	}
	p, ids, err := s.deps.Store.AddRefs(ctx, id, up.refs, false, maxPhotos)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fail(c, http.StatusNotFound, "poi not found", fmt.Sprintf("no POI %q", id))
		return
	case errors.Is(err, store.ErrTooMany):
		fail(c, http.StatusConflict, "too many photos", err.Error())
		return
	case err != nil:
		s.internal(c, "add images to "+id, err)
		return
	}
	if err := s.refsChanged(c, p); err != nil {
		s.internal(c, "add images to "+id, err)
		return
	}
	s.audit(c, audit.POIImageAdd, map[string]any{"poi_id": id, "images": len(files), "references": len(ids)})
	body := toBody(p)
	for _, r := range p.Refs {
		body.ReferenceImages = append(body.ReferenceImages, referenceImage{EmbeddingID: r.EmbeddingID, VectorDim: len(r.Vector)})
	}
	body.Images = up.report(id, func(i int) string { return ids[i] })
	c.JSON(http.StatusCreated, body)
}

func (s *Server) deleteImage(c *gin.Context) {
	id, ok := s.poiParam(c)
	if !ok {
		return
	}
	eid := c.Param("embedding_id")
	p, err := s.removeRef(c, id, eid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fail(c, http.StatusNotFound, "reference not found", fmt.Sprintf("POI %q has no reference %q", id, eid))
		return
	case errors.Is(err, store.ErrLastReference):
		fail(c, http.StatusConflict, "last reference", fmt.Sprintf("%q is the only reference of POI %q: delete the POI instead", eid, id))
		return
	case err != nil:
		s.internal(c, "remove reference of "+id, err)
		return
	}
	s.audit(c, audit.POIImageDel, map[string]any{"poi_id": id, "embedding_id": eid})
	body := toBody(p)
	for _, r := range p.Refs {
		body.ReferenceImages = append(body.ReferenceImages, referenceImage{EmbeddingID: r.EmbeddingID, VectorDim: len(r.Vector)})
	}
	c.JSON(http.StatusOK, body)
}
