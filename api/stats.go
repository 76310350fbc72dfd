package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"poi/internal/review"
	"poi/streams"
)

// simRange is the similarity range of a group of alerts.
type simRange struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// outcomes counts the review outcomes of one camera or POI.
type outcomes struct {
	CameraID     string    `json:"camera_id,omitempty"`
	POIID        string    `json:"poi_id,omitempty"`
	Confirmed    int       `json:"confirmed"`
	Dismissed    int       `json:"dismissed"`
	Acknowledged int       `json:"acknowledged"`
	Unreviewed   int       `json:"unreviewed"`
	ConfirmedSim *simRange `json:"confirmed_similarity,omitempty"`
	DismissedSim *simRange `json:"dismissed_similarity,omitempty"`
	OpenSim      *simRange `json:"unreviewed_similarity,omitempty"`
	// NearThreshold flags a camera whose dismissed alerts all lie just
	// above the match threshold: false matches there are the threshold's.
	NearThreshold bool   `json:"dismissed_near_threshold,omitempty"`
	Message       string `json:"message,omitempty"`
}

func widen(r **simRange, v float64) {
	if *r == nil {
		*r = &simRange{Min: v, Max: v}
		return
	}
	(*r).Min, (*r).Max = min((*r).Min, v), max((*r).Max, v)
}

func (o *outcomes) add(a streams.Alert) {
	sim := a.Match.SimilarityScore
	switch a.Status {
	case review.Confirmed:
		o.Confirmed++
		widen(&o.ConfirmedSim, sim)
	case review.Dismissed:
		o.Dismissed++
		widen(&o.DismissedSim, sim)
	case review.Acknowledged:
		o.Acknowledged++
		widen(&o.OpenSim, sim)
	default:
		o.Unreviewed++
		widen(&o.OpenSim, sim)
	}
}

// reviewStats groups alerts (the pure part of GET /stats/reviews): per
// camera and per POI, sorted by id, with the near-threshold flag.
func reviewStats(alerts []streams.Alert, since time.Time, threshold, near float64) (cams, pois []*outcomes) {
	byCam, byPOI := map[string]*outcomes{}, map[string]*outcomes{}
	for _, a := range alerts {
		if !since.IsZero() {
			t, err := time.Parse(time.RFC3339, a.Timestamp)
			if err != nil || t.Before(since) {
				continue
			}
		}
		c := byCam[a.Match.CameraID]
		if c == nil {
			c = &outcomes{CameraID: a.Match.CameraID}
			byCam[a.Match.CameraID] = c
		}
		c.add(a)
		p := byPOI[a.POIID]
		if p == nil {
			p = &outcomes{POIID: a.POIID}
			byPOI[a.POIID] = p
		}
		p.add(a)
	}
	for _, c := range byCam {
		// Similarities are rounded to 4 places: compare with that slack.
		if c.DismissedSim != nil && c.DismissedSim.Max <= threshold+near+1e-4 {
			c.NearThreshold = true
			c.Message = fmt.Sprintf("all %d dismissed alerts of %s lie within %.2f of the match threshold %.2f (%.4f to %.4f): the threshold may be too low for this camera",
				c.Dismissed, c.CameraID, near, threshold, c.DismissedSim.Min, c.DismissedSim.Max)
		}
		cams = append(cams, c)
	}
	for _, p := range byPOI {
		pois = append(pois, p)
	}
	sort.Slice(cams, func(i, j int) bool { return cams[i].CameraID < cams[j].CameraID })
	sort.Slice(pois, func(i, j int) bool { return pois[i].POIID < pois[j].POIID })
	return cams, pois
}

func (s *Server) reviewStats(c *gin.Context) {
	var since time.Time
	if v, ok := c.GetQuery("since"); ok {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			fail(c, http.StatusBadRequest, "bad query", fmt.Sprintf("since %q is not an RFC 3339 time", v))
			return
		}
		since = t
	}
	raws, err := s.deps.Store.AllAlerts(c.Request.Context())
	if err != nil {
		s.internal(c, "review statistics", err)
		return
	}
	alerts := make([]streams.Alert, 0, len(raws))
	for _, raw := range raws {
		var a streams.Alert
		if err := json.Unmarshal(raw, &a); err != nil {
			s.deps.Log.Warn("unreadable alert record left out of the statistics", "error", err)
			continue
		}
		alerts = append(alerts, a)
	}
	thr, near := s.deps.Config.Face.MatchThreshold, s.deps.Config.Review.NearThreshold
	cams, pois := reviewStats(alerts, since, thr, near)
	if cams == nil {
		cams = []*outcomes{}
	}
	if pois == nil {
		pois = []*outcomes{}
	}
	counted := 0
	for _, o := range cams {
		counted += o.Confirmed + o.Dismissed + o.Acknowledged + o.Unreviewed
	}
	c.JSON(http.StatusOK, gin.H{"match_threshold": thr, "near_threshold": near, "alerts": counted, "cameras": cams, "pois": pois})
}
