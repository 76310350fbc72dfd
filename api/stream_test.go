package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"poi/internal/stacktest"
	"poi/streams"
)

// sse is one server-sent event.
type sse struct {
	id, event, data string
}

// openStream connects to the alert stream (with lastID as Last-Event-ID
// unless empty) and returns its events as they come.
func openStream(t *testing.T, ctx context.Context, url, lastID string) <-chan sse {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/api/v1/alerts/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("alert stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sse, 16)
	sc := bufio.NewScanner(resp.Body)
	// The first line is the comment that opens the stream: once it is
	// read, the server's consumer exists and nothing published after is missed.
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), ":") {
		t.Fatalf("alert stream opened with %q", sc.Text())
	}
	go func() {
		defer resp.Body.Close()
		defer close(out)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					out <- ev
				}
				ev = sse{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan sse) sse {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the alert stream ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no alert event within 30s")
	}
	return sse{}
}

// TestAlertStreamResumesAfterLastEventID: alerts published on POI_ALERTS
// reach a connected client with their stream sequence as id, and a client
// that reconnects with the last id it saw gets the alerts after it, none
// twice and none lost.
func TestAlertStreamResumesAfterLastEventID(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	publish := func(id string) uint64 {
		b, _ := json.Marshal(streams.Alert{EventType: "poi_match_alert", AlertID: id, POIID: "poi-0000000000000001", Severity: "high", Status: "New"})
		ack, err := s.JS.Publish(ctx, streams.AlertsSubj+".high.poi-0000000000000001", b)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	publish("before-anyone-listened")
	live := openStream(t, ctx, s.URL, "")
	seqs := []uint64{publish("a1"), publish("a2"), publish("a3")}
	for i, want := range []string{"a1", "a2", "a3"} {
		ev := next(t, live)
		var a streams.Alert
		if err := json.Unmarshal([]byte(ev.data), &a); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		if ev.event != "alert" || a.AlertID != want || ev.id != strconv.FormatUint(seqs[i], 10) {
			t.Fatalf("event %d: %+v (alert %s), want alert %s with id %d", i, ev, a.AlertID, want, seqs[i])
		}
	}
	// A client that saw a1 reconnects: a2 and a3 follow, then a4.
	resumed := openStream(t, ctx, s.URL, strconv.FormatUint(seqs[0], 10))
	seqs = append(seqs, publish("a4"))
	for i, want := range []string{"a2", "a3", "a4"} {
		ev := next(t, resumed)
		if !strings.Contains(ev.data, `"alert_id":"`+want+`"`) || ev.id != strconv.FormatUint(seqs[i+1], 10) {
			t.Fatalf("resumed event %d: %+v, want %s", i, ev, want)
		}
	}
	if ev := next(t, live); !strings.Contains(ev.data, `"a4"`) {
		t.Fatalf("the first client got %+v after a3, want a4", ev)
	}
	// How long an alert takes from POI_ALERTS to a connected client, over
	// 50 alerts one at a time (logged for the README; the wait is bounded by
	// next, not asserted).
	var lat []time.Duration
	for i := range 50 {
		start := time.Now()
		publish("lat-" + strconv.Itoa(i))
		if ev := next(t, live); !strings.Contains(ev.data, `"lat-`+strconv.Itoa(i)+`"`) {
			t.Fatalf("latency alert %d: got %+v", i, ev)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("POI_ALERTS publish to SSE client: p50 %s, p99 %s, max %s over %d alerts", lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], len(lat))
	// A resume point that is not a sequence is refused before streaming.
	code, body := do(t, "GET", s.URL+"/api/v1/alerts/stream?last_event_id=abc")
	if code != 422 || !strings.Contains(string(body), "Last-Event-ID") {
		t.Fatalf("bad last_event_id: %d %s", code, body)
	}
}
