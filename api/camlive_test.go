package api

import (
	"testing"
	"time"

	"poi/streams"
)

func TestLiveViewRatesAndLag(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	key := func(track, which string) string { return "track:frame:" + track + ":" + which }
	tracks := []openTrack{
		{ID: "cam:a:1", Entry: now.Add(-10 * time.Second), Last: now.Add(-6 * time.Second), Box: streams.Box{1, 2, 3, 4}, Frames: 9},
		{ID: "cam:a:2", Entry: now.Add(-3 * time.Second), Last: now.Add(-2 * time.Second), Box: streams.Box{5, 6, 7, 8}, Frames: 11},
		{ID: "cam:a:3", Entry: now.Add(-2 * time.Second), Last: now.Add(-2 * time.Second), Frames: 1},
	}
	v := liveView("cam-a", now.Add(-time.Second), tracks, now, key)
	if len(v.OpenTracks) != 3 || v.OpenTracks[0].TrackID != "cam:a:2" && v.OpenTracks[0].TrackID != "cam:a:3" {
		t.Fatalf("open tracks not newest first: %+v", v.OpenTracks)
	}
	if v.FPS != 10 {
		t.Errorf("fps %v, want 10 (10 frame intervals in 1 s)", v.FPS)
	}
	if v.LagSeconds == nil || *v.LagSeconds != 2 || v.LastFrame != "2026-01-02T03:04:03Z" {
		t.Errorf("lag %v last frame %q, want 2 s behind at 03:04:03", v.LagSeconds, v.LastFrame)
	}
	if v.LatestFrameURL != FrameURL(key(v.OpenTracks[0].TrackID, "last")) || v.LastReceived != "2026-01-02T03:04:04Z" {
		t.Errorf("latest frame %q, received %q", v.LatestFrameURL, v.LastReceived)
	}
	// A single-frame track has no rate; no open track, no lag and no frame.
	for _, tr := range v.OpenTracks {
		if tr.TrackID == "cam:a:3" && tr.FPS != 0 {
			t.Errorf("a one-frame track has fps %v", tr.FPS)
		}
	}
	idle := liveView("cam-b", now, nil, now, key)
	if idle.LagSeconds != nil || idle.LatestFrameURL != "" || idle.OpenTracks == nil || len(idle.OpenTracks) != 0 {
		t.Errorf("an idle camera: %+v", idle)
	}
}
