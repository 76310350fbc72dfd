package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrExists is returned when a POI id is already taken (or was erased: an
// erased id is never given out again).
var ErrExists = errors.New("poi id already exists")

// POIIDHexDigits is the hex length of a new POI id: 64 random bits.
const POIIDHexDigits = 16

// legacyPOIIDHexDigits is the length of the ids enrolled before ids grew to
// 64 bits; they are still read, deleted and erased.
const legacyPOIIDHexDigits = 8

// NewPOIID is the seed's id shape, "poi-" + lower-case hex, with 64 random
// bits so that ids cannot be guessed or collide in practice.
func NewPOIID() (string, error) {
	var b [POIIDHexDigits / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new poi id: %w", err)
	}
	return "poi-" + hex.EncodeToString(b[:]), nil
}

// IsPOIID reports whether s has the form of a POI id (new or legacy).
func IsPOIID(s string) bool {
	rest, ok := strings.CutPrefix(s, "poi-")
	if !ok || len(rest) != POIIDHexDigits && len(rest) != legacyPOIIDHexDigits {
		return false
	}
	for _, c := range rest {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// EmbeddingID names the n-th (from 1) reference of a POI.
func EmbeddingID(poiID string, n int) string {
	return fmt.Sprintf("emb-%s-%d", strings.TrimPrefix(poiID, "poi-"), n)
}

// WithID returns p under another id, its references renamed to match.
func (p POI) WithID(id string) POI {
	q := p
	q.ID = id
	q.Refs = make([]Ref, len(p.Refs))
	for i, r := range p.Refs {
		r.EmbeddingID = EmbeddingID(id, i+1)
		q.Refs[i] = r
	}
	return q
}

// maxIDAttempts bounds how many fresh ids an enrolment tries: with 64
// random bits a second attempt already means the generator is broken.
const maxIDAttempts = 3

// EnrolPOI creates p under a fresh id from newID, never overwriting: an id
// that is taken is replaced by the next one (WithID), up to a few times. It
// returns the POI as stored. The POI is also put in the control outbox in
// the same step, so its enrolment event is published even if this process
// dies right after (see ControlOutbox).
func (s *Store) EnrolPOI(ctx context.Context, p POI, newID func() (string, error)) (POI, error) {
	return enrolWith(p, newID, func(q POI) error { return s.CreatePOI(ctx, q) })
}

// enrolWith is EnrolPOI's retry over ids, apart from Redis.
func enrolWith(p POI, newID func() (string, error), create func(POI) error) (POI, error) {
	var tried []string
	for range maxIDAttempts {
		id, err := newID()
		if err != nil {
			return POI{}, err
		}
		q := p.WithID(id)
		err = create(q)
		if errors.Is(err, ErrExists) {
			tried = append(tried, id)
			continue
		}
		if err != nil {
			return POI{}, err
		}
		return q, nil
	}
	return POI{}, fmt.Errorf("enrol: ids %v all taken: %w", tried, ErrExists)
}

// CreatePOI writes a POI if its id is free: metadata, reference vectors and
// photos, its place in the creation-time index and in the control outbox,
// all in one step on the server. A taken (or erased) id writes nothing and
// returns ErrExists.
func (s *Store) CreatePOI(ctx context.Context, p POI) error {
	k := s.keys
	keys := []string{k.POI(p.ID), k.POIRefs(p.ID), k.POIIndex(), k.ControlOutbox(), k.Tombstone(p.ID)}
	args := []any{p.ID, p.Severity, p.Notes, p.Status, p.Model, p.CreatedAt.UTC().Format(time.RFC3339Nano), len(p.Refs), p.CreatedAt.UnixMilli()}
	for _, r := range p.Refs {
		keys = append(keys, k.POIPhoto(p.ID, r.EmbeddingID))
		args = append(args, r.EmbeddingID, EncodeVector(r.Vector), r.Photo)
	}
	sc, c, done := s.scripter(ctx)
	defer done()
	n, err := s.createScript.Run(ctx, sc, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("create poi %s: %w", p.ID, err)
	}
	if n != 0 {
		if err := s.replicated(ctx, c, "enrolment "+p.ID); err != nil {
			// Not an error to the client: the POI and its control event are
			// in the outbox of a primary that may survive, so a retry by the
			// client could enrol the person twice. Logged as the write a
			// failover may lose (README, "Running a cluster").
			s.log.Warn("enrolment stored, replication unconfirmed", "poi_id", p.ID, "error", err)
		}
	}
	if n == 0 {
		return fmt.Errorf("create poi %s: %w", p.ID, ErrExists)
	}
	return nil
}

// createLua: KEYS: metadata, refs, index, outbox, tombstone, then one photo
// key per reference. ARGV: id, severity, notes, status, model, created_at,
// reference count, created (ms), then embedding id, vector, photo per
// reference (an empty photo is not stored).
const createLua = `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[5]) == 1
   or redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'poi_id', ARGV[1], 'severity', ARGV[2], 'notes', ARGV[3], 'status', ARGV[4],
  'model', ARGV[5], 'created_at', ARGV[6], 'refs', ARGV[7])
for i = 1, tonumber(ARGV[7]) do
  local a = 8 + (i - 1) * 3
  redis.call('HSET', KEYS[2], ARGV[a + 1], ARGV[a + 2])
  if ARGV[a + 3] ~= '' then redis.call('SET', KEYS[5 + i], ARGV[a + 3]) end
end
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1])
return 1
`

// PendingEnrolments lists the POIs whose enrolment event is not yet known
// to be stored on POI_CONTROL, oldest first.
func (s *Store) PendingEnrolments(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.ControlOutbox(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("control outbox: %w", err)
	}
	return ids, nil
}

// EnrolmentPublished takes a POI out of the control outbox.
func (s *Store) EnrolmentPublished(ctx context.Context, id string) error {
	if err := s.rdb.ZRem(ctx, s.keys.ControlOutbox(), id).Err(); err != nil {
		return fmt.Errorf("control outbox: clear %s: %w", id, err)
	}
	return nil
}
