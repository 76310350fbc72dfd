package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go/jetstream"

	"poi/streams"
)

// sseHeartbeat keeps idle proxies and browsers from closing a quiet
// alert stream.
const sseHeartbeat = 15 * time.Second

// alertStream sends every alert published on POI_ALERTS from now on as a
// server-sent event whose id is the alert's stream sequence. Each client
// reads through an ordered consumer of its own (ephemeral: nothing is left
// on the server when it goes), so a reconnect that names the last id it
// saw, in the Last-Event-ID header or the last_event_id parameter, resumes
// right after it: no alert lost, none repeated.
func (s *Server) alertStream(c *gin.Context) {
	last := c.GetHeader("Last-Event-ID")
	if v, ok := c.GetQuery("last_event_id"); ok && last == "" {
		last = v
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if last = strings.TrimSpace(last); last != "" {
		seq, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			fail(c, http.StatusUnprocessableEntity, "invalid last event id",
				fmt.Sprintf("Last-Event-ID: %q is not a stream sequence (a non-negative integer)", last))
			return
		}
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1}
	}
	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	if s.deps.JS == nil {
		fail(c, http.StatusServiceUnavailable, "dependency unavailable", "the alert stream needs NATS, which this process has no connection to")
		return
	}
	cons, err := s.deps.JS.OrderedConsumer(ctx, streams.Alerts, cfg)
	if err != nil {
		s.internal(c, "alert stream", err)
		return
	}
	it, err := cons.Messages()
	if err != nil {
		s.internal(c, "alert stream", err)
		return
	}
	msgs := make(chan jetstream.Msg)
	go func() {
		// Next blocks until a message or Stop; Stop is called when the
		// handler returns, which ends this goroutine.
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					s.deps.Log.Warn("alert stream", "error", err)
				}
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer it.Stop()

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	// The comment line answers the request at once: the client knows the
	// stream is open before the first alert.
	fmt.Fprint(c.Writer, ": alerts\nretry: 2000\n\n")
	c.Writer.Flush()
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-beat.C:
			fmt.Fprint(c.Writer, ": keep-alive\n\n")
		case m, ok := <-msgs:
			if !ok {
				return
			}
			md, err := m.Metadata()
			if err != nil {
				s.deps.Log.Warn("alert stream: message without metadata", "error", err)
				return
			}
			fmt.Fprint(c.Writer, sseEvent(md.Sequence.Stream, m.Data()))
		}
		c.Writer.Flush()
	}
}

// sseEvent is one alert as an event. The payload is one line of JSON, but
// each line is prefixed anyway so that no payload can end the event early.
func sseEvent(seq uint64, data []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "id: %d\nevent: alert\n", seq)
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteString("\n")
	return b.String()
}
