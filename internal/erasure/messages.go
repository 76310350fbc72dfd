package erasure

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"poi/streams"
)

// legacyControlSubjects are where control events went before they were
// published per POI; their messages expire with the stream's MaxAge, and
// until then the purge and the proof look inside them for the POI.
var legacyControlSubjects = []string{streams.ControlSubj + "." + streams.OpEnrolled, streams.ControlSubj + "." + streams.OpDeleted}

func controlFilters(id string) []string {
	return append([]string{streams.ControlPOIFilter(id)}, legacyControlSubjects...)
}

// alertFilters match every message of one POI on POI_ALERTS: its alerts
// and their reviews.
func alertFilters(id string) []string {
	return []string{streams.AlertsPOIFilter(id), streams.ReviewsPOIFilter(id)}
}

// storedMsg is a stream message found for a POI.
type storedMsg struct {
	Seq     uint64
	Subject string
}

// messagesNaming lists the messages of stream on the filter subjects that
// belong to the POI: all of them on a per-POI filter, and on the legacy
// subjects those whose headers or body name it.
func messagesNaming(ctx context.Context, js jetstream.JetStream, stream string, filters []string, id string) ([]storedMsg, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	var out []storedMsg
	for _, f := range filters {
		perPOI := !isLegacy(f)
		for seq := uint64(1); ; {
			m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("stream %s: read %s from %d: %w", stream, f, seq, err)
			}
			if perPOI || names(m, id) {
				out = append(out, storedMsg{Seq: m.Sequence, Subject: m.Subject})
			}
			seq = m.Sequence + 1
		}
	}
	return out, nil
}

func isLegacy(subject string) bool {
	for _, l := range legacyControlSubjects {
		if subject == l {
			return true
		}
	}
	return false
}

func names(m *jetstream.RawStreamMsg, id string) bool {
	if bytes.Contains(m.Data, []byte(id)) {
		return true
	}
	for _, vs := range m.Header {
		for _, v := range vs {
			if bytes.Contains([]byte(v), []byte(id)) {
				return true
			}
		}
	}
	return false
}

// eraseMessages overwrites and removes every message of the POI on stream.
// A plain purge only unlinks messages, leaving their bytes (vectors, notes)
// in the block files until the server compacts them; a secure delete
// overwrites each record first.
func eraseMessages(ctx context.Context, js jetstream.JetStream, stream string, filters []string, id string) error {
	msgs, err := messagesNaming(ctx, js, stream, filters, id)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	for _, m := range msgs {
		if err := s.SecureDeleteMsg(ctx, m.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return fmt.Errorf("stream %s: erase %d (%s): %w", stream, m.Seq, m.Subject, err)
		}
	}
	return nil
}

// EraseMessage overwrites and removes one message that a writer racing a
// purge (an alert worker, the outbox) stored after the purge swept its
// stream. A message already gone is not an error.
func EraseMessage(ctx context.Context, js jetstream.JetStream, stream string, seq uint64) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	if err := s.SecureDeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		return fmt.Errorf("stream %s: erase %d: %w", stream, seq, err)
	}
	return nil
}
