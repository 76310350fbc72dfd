package api

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"poi/internal/audit"
)

// deletePOI erases the POI (erasure.Purger): a tombstone and the removal of
// the Redis metadata first, then the FAISS vectors of every replica, the
// POI's control and alert messages, and everything else naming it. A purge
// that failed part-way (503) is finished by the next DELETE; a DELETE of a
// POI already erased answers 200 again while its tombstone lives
// (erasure.tombstone_ttl), and 404 once it expired or for a POI never
// enrolled.
func (s *Server) deletePOI(c *gin.Context) {
	id, ok := s.poiParam(c)
	if !ok {
		return
	}
	found, err := s.deps.Erase.Purge(c.Request.Context(), id)
	if err != nil {
		s.internal(c, "delete "+id, err)
		return
	}
	if !found {
		fail(c, http.StatusNotFound, "poi not found", fmt.Sprintf("no POI %q", id))
		return
	}
	s.audit(c, audit.POIDelete, map[string]any{"poi_id": id})
	c.JSON(http.StatusOK, gin.H{"status": "deleted", "poi_id": id})
}
