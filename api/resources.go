package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"poi/internal/audit"
	"poi/internal/config"
	"poi/internal/scenescape"
	"poi/internal/store"
)

// maxAlertsListed is the seed's "last 50".
const maxAlertsListed = 50

func serveJPEG(c *gin.Context, b []byte) {
	// Frames and thumbnails never change once written: the client may
	// cache them, shared caches never (they are faces, served by key).
	c.Header("Cache-Control", "private, max-age=86400, immutable")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, "image/jpeg", b)
}

// frame serves only keys of the frame namespace: anything else, including
// base64url that decodes to another Redis key, is a 404.
func (s *Server) frame(c *gin.Context) {
	enc := c.Param("encoded_key")
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "="))
	if err != nil {
		fail(c, http.StatusNotFound, "frame not found", "encoded_key is not base64url")
		return
	}
	b, err := s.deps.Store.Frame(c.Request.Context(), string(raw))
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "frame not found", "no frame for that key")
		return
	}
	if err != nil {
		s.internal(c, "frame", err)
		return
	}
	serveJPEG(c, b)
}

func (s *Server) thumbnail(c *gin.Context) {
	id := c.Param("object_id")
	b, err := s.deps.Store.Thumbnail(c.Request.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "thumbnail not found", fmt.Sprintf("no thumbnail for %q", id))
		return
	}
	if err != nil {
		s.internal(c, "thumbnail", err)
		return
	}
	serveJPEG(c, b)
}

// cameras lists cameras from SceneScape when it is configured, otherwise
// from configuration plus the cameras seen on MQTT.
func (s *Server) cameras(ctx context.Context) ([]config.Camera, error) {
	if s.deps.Config.SceneScape.URL != "" {
		return s.scenescape.Cameras(ctx)
	}
	byID := map[string]config.Camera{}
	for _, cam := range s.deps.Config.Cameras.List {
		byID[cam.ID] = cam
	}
	seen, err := s.deps.Store.CamerasSeen(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range seen {
		if _, ok := byID[id]; !ok {
			byID[id] = config.Camera{ID: id, Name: id}
		}
	}
	out := make([]config.Camera, 0, len(byID))
	for _, cam := range byID {
		out = append(out, cam)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *Server) camerasOrFail(c *gin.Context) ([]config.Camera, bool) {
	cams, err := s.cameras(c.Request.Context())
	if err == nil {
		return cams, true
	}
	var se *scenescape.Error
	if errors.As(err, &se) {
		s.deps.Log.Warn("scenescape", "error", err)
		fail(c, http.StatusBadGateway, "scenescape unavailable", err.Error())
		return nil, false
	}
	s.internal(c, "cameras", err)
	return nil, false
}

func (s *Server) listCameras(c *gin.Context) {
	cams, ok := s.camerasOrFail(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, gin.H{"cameras": cams, "count": len(cams)})
}

func (s *Server) getCamera(c *gin.Context) {
	id := c.Param("camera_id")
	cams, ok := s.camerasOrFail(c)
	if !ok {
		return
	}
	for _, cam := range cams {
		if cam.ID == id {
			c.JSON(http.StatusOK, cam)
			return
		}
	}
	fail(c, http.StatusNotFound, "camera not found", fmt.Sprintf("no camera %q", id))
}

func (s *Server) deleteAlerts(c *gin.Context) {
	n, err := s.deps.Store.DeleteAlerts(c.Request.Context())
	if err != nil {
		s.internal(c, "delete alerts", err)
		return
	}
	s.audit(c, audit.AlertsClear, map[string]any{"deleted_count": n})
	c.JSON(http.StatusOK, gin.H{"deleted_count": n})
}
