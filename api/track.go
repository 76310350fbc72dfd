package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/store"
	"poi/streams"
)

// errTrackGone is a track whose samples are no longer kept.
var errTrackGone = errors.New("track not found or its samples have expired")

// trackClockSlack is how far before a track's entry (a camera's clock)
// its samples are looked for on POI_SAMPLES (the server's clock): a camera
// whose clock runs ahead would otherwise have them skipped.
const trackClockSlack = 10 * time.Minute

// maxSampleScan bounds how many messages of a camera one enrolment reads.
const maxSampleScan = 100_000

// trackRefs returns the stored sample vectors of a track, as references
// (the first with the track's thumbnail as its photo). The vectors live on
// POI_SAMPLES for pipeline.retention: that is where they are read, from
// shortly before the track's entry, among its camera's samples only.
func (s *Server) trackRefs(ctx context.Context, trackID string) ([]store.Ref, error) {
	tr, err := s.deps.Store.GetTrack(ctx, trackID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("track %q: %w", trackID, errTrackGone)
	}
	if err != nil {
		return nil, err
	}
	start := tr.Entry.Add(-trackClockSlack)
	cons, err := s.deps.JS.OrderedConsumer(ctx, streams.Samples, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{streams.Subject(streams.SamplesSubj, tr.CameraID)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
	})
	if err != nil {
		return nil, fmt.Errorf("track %s samples: %w", trackID, err)
	}
	var refs []store.Ref
	model := s.deps.POI.Index().Model().Name
	for read := 0; read < maxSampleScan; {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, fmt.Errorf("track %s samples: %w", trackID, err)
		}
		n := 0
		var pending uint64
		for msg := range batch.Messages() {
			n++
			var sm streams.Sample
			if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &sm); err != nil {
				continue // not ours to judge here; the replica logs it
			}
			if meta, err := msg.Metadata(); err == nil {
				pending = meta.NumPending
			}
			if sm.TrackID == trackID && sm.Model == model && len(sm.Vector) > 0 {
				refs = append(refs, store.Ref{Vector: sm.Vector})
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("track %s samples: %w", trackID, err)
		}
		read += n
		if n == 0 || pending == 0 {
			break
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("track %q: %w", trackID, errTrackGone)
	}
	if thumb, err := s.deps.Store.Thumbnail(ctx, trackID); err == nil {
		refs[0].Photo = thumb
	}
	return refs, nil
}
