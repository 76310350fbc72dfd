package api

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"poi/streams"
)

// openTrack is a face track the tracker holds open on a camera: the part of
// the index worker's tracker state (track:state:{camera}) the console shows.
type openTrack struct {
	ID     string      `json:"id"`
	Entry  time.Time   `json:"entry"`
	Last   time.Time   `json:"last"`
	Box    streams.Box `json:"box"`
	Frames int         `json:"frames"`
}

type liveTrack struct {
	TrackID  string  `json:"track_id"`
	BBox     []int   `json:"bbox"`
	Entry    string  `json:"entry_time"`
	LastSeen string  `json:"last_seen"`
	Frames   int     `json:"frames"`
	FPS      float64 `json:"fps"`
	FrameURL string  `json:"frame_url"`
}

type cameraLive struct {
	CameraID string `json:"camera_id"`
	// LastReceived is when the bridge last took a message of the camera
	// (service clock); LastFrame is the camera time of the newest frame the
	// tracker applied, and LagSeconds how far that is behind now.
	LastReceived   string      `json:"last_received,omitempty"`
	LastFrame      string      `json:"last_frame,omitempty"`
	LagSeconds     *float64    `json:"lag_seconds,omitempty"`
	FPS            float64     `json:"fps"`
	LatestFrameURL string      `json:"latest_frame_url,omitempty"`
	OpenTracks     []liveTrack `json:"open_tracks"`
}

// cameraLive is what the console's camera wall shows of one camera: its
// open face tracks with their boxes, the newest of their frames, the rate
// at which its faces are tracked and how far behind processing is.
func (s *Server) cameraLive(c *gin.Context) {
	id := c.Param("camera_id")
	ctx := c.Request.Context()
	seen, err := s.deps.Store.CameraSeenAt(ctx, id)
	if err != nil {
		s.internal(c, "camera live", err)
		return
	}
	raw, _, err := s.deps.Store.TrackerState(ctx, id)
	if err != nil {
		s.internal(c, "camera live", err)
		return
	}
	if seen.IsZero() && raw == nil {
		fail(c, http.StatusNotFound, "camera not found", fmt.Sprintf("camera %q has sent nothing", id))
		return
	}
	var st struct {
		Tracks []openTrack `json:"tracks"`
	}
	if raw != nil {
		if err := json.Unmarshal(raw, &st); err != nil {
			s.internal(c, "camera live: tracker state of "+id, err)
			return
		}
	}
	c.JSON(http.StatusOK, liveView(id, seen, st.Tracks, time.Now(), s.deps.Store.Keys().TrackFrame))
}

// liveView builds the answer from the tracker's open tracks (pure).
func liveView(id string, seen time.Time, tracks []openTrack, now time.Time, frameKey func(track, which string) string) cameraLive {
	out := cameraLive{CameraID: id, LastReceived: rfc3339(seen), OpenTracks: []liveTrack{}}
	sort.Slice(tracks, func(i, j int) bool { return tracks[i].Last.After(tracks[j].Last) })
	for _, t := range tracks {
		fps := 0.0
		if span := t.Last.Sub(t.Entry).Seconds(); span > 0 && t.Frames > 1 {
			fps = round4(float64(t.Frames-1) / span)
		}
		out.FPS = math.Max(out.FPS, fps)
		out.OpenTracks = append(out.OpenTracks, liveTrack{TrackID: t.ID, BBox: boxSlice(t.Box), Entry: rfc3339(t.Entry), LastSeen: rfc3339(t.Last),
			Frames: t.Frames, FPS: fps, FrameURL: FrameURL(frameKey(t.ID, "last"))})
	}
	if len(tracks) > 0 {
		newest := tracks[0].Last
		out.LastFrame = rfc3339(newest)
		lag := round4(math.Max(0, now.Sub(newest).Seconds()))
		out.LagSeconds = &lag
		out.LatestFrameURL = FrameURL(frameKey(tracks[0].ID, "last"))
	}
	return out
}
