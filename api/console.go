package api

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"poi/internal/store"
)

// consoleFiles is the operator console: hand-written ES modules and CSS
// served as they are, so the binary needs no JavaScript build step.
//
//go:embed console
var consoleFiles embed.FS

// consoleIndex serves the console's single page.
func (s *Server) consoleIndex(c *gin.Context) { s.serveConsole(c, "index.html") }

// consoleFile serves one file of the console by name (the folder is flat).
func (s *Server) consoleFile(c *gin.Context) { s.serveConsole(c, c.Param("file")) }

func (s *Server) serveConsole(c *gin.Context, name string) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		fail(c, http.StatusNotFound, "not found", "no console file "+name)
		return
	}
	b, err := consoleFiles.ReadFile(path.Join("console", name))
	if err != nil {
		fail(c, http.StatusNotFound, "not found", "no console file "+name)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	// The files change with the binary only; revalidating on each load
	// keeps a console open across an upgrade from mixing two versions.
	c.Header("Cache-Control", "no-cache")
	// The console loads nothing from elsewhere, and no other site may frame it.
	c.Header("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; media-src 'self' data:; frame-ancestors 'none'")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Referrer-Policy", "no-referrer")
	c.Data(http.StatusOK, ct, b)
}

// photoURL is the API path of a POI's reference face.
func photoURL(poi, embeddingID string) string {
	return "/api/v1/poi/" + poi + "/photos/" + embeddingID
}

// poiPhoto serves the aligned face a POI was enrolled with.
func (s *Server) poiPhoto(c *gin.Context) {
	id, ok := s.poiParam(c)
	if !ok {
		return
	}
	eid := c.Param("embedding_id")
	if eid == "" {
		// The POI's first reference: what a list shows beside each POI.
		p, err := s.deps.Store.GetPOI(c.Request.Context(), id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.internal(c, "poi photo", err)
			return
		}
		if len(p.Refs) > 0 {
			eid = p.Refs[0].EmbeddingID
		}
	}
	if eid == "" || strings.ContainsAny(eid, ":*?[") {
		fail(c, http.StatusNotFound, "photo not found", fmt.Sprintf("POI %q has no reference %q", id, eid))
		return
	}
	b, err := s.deps.Store.POIPhoto(c.Request.Context(), id, eid)
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "photo not found", fmt.Sprintf("POI %q has no reference %q", id, eid))
		return
	}
	if err != nil {
		s.internal(c, "poi photo", err)
		return
	}
	serveJPEG(c, b)
}

// poiActivity is what the console's POI page shows besides the POI: the
// tracks it was matched on over the retention period and its recent alerts.
func (s *Server) poiActivity(c *gin.Context) {
	id, ok := s.poiParam(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if _, err := s.deps.Store.GetPOI(ctx, id); errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "poi not found", fmt.Sprintf("no POI %q", id))
		return
	} else if err != nil {
		s.internal(c, "poi activity "+id, err)
		return
	}
	now := time.Now().UTC()
	apps, err := s.poiAppearances(ctx, id, now.Add(-s.deps.Config.Pipeline.Retention), now, maxTopK)
	if err != nil {
		s.internal(c, "poi activity "+id, err)
		return
	}
	alerts, err := s.deps.Store.AlertsOf(ctx, id)
	if err != nil {
		s.internal(c, "poi activity "+id, err)
		return
	}
	if alerts == nil {
		alerts = []json.RawMessage{}
	}
	c.JSON(http.StatusOK, gin.H{"poi_id": id, "appearances": apps, "alerts": alerts})
}
