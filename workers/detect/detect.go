// Package detect holds the frames stage: SceneScape camera images become
// the camera's latest frame, from which the tracker crops and embeds
// upstream boxes and takes entry and exit frames. Face detection itself is
// a service (package embed, mode detect) that the tracker asks for the
// frames of a batch at once, so it spreads over every detection worker.
package detect

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/store"
	"poi/streams"
	"poi/workers/pool"
)

// Stage is the frames stage.
type Stage struct {
	store *store.Store
}

// New returns the stage.
func New(st *store.Store) *Stage { return &Stage{store: st} }

// HandleImage is the pool handler of the frames consumer.
func (s *Stage) HandleImage(ctx context.Context, msg jetstream.Msg) error {
	var ci streams.CameraImage
	if err := streams.DecodeMsg(msg.Headers(), msg.Data(), &ci); err != nil {
		return pool.Permanent("bad_envelope", err)
	}
	return s.store.SetCameraLatest(ctx, ci.CameraID, ci.JPEG)
}
