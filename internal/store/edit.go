package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrTooMany is a change that would take a POI over its reference cap.
var ErrTooMany = errors.New("too many references")

// ErrLastReference is the removal of a POI's only reference.
var ErrLastReference = errors.New("the last reference")

// POIUpdate is a change of a POI's metadata; nil fields stay as they are.
type POIUpdate struct {
	Severity, Notes, Status *string
	// ExpiresAt: a zero time clears the expiry.
	ExpiresAt *time.Time
}

// UpdatePOI applies u to the POI. An unknown (or erased) POI is
// ErrNotFound.
func (s *Store) UpdatePOI(ctx context.Context, id string, u POIUpdate) error {
	args := []any{}
	add := func(field string, v *string) {
		if v != nil {
			args = append(args, field, *v)
		}
	}
	add("severity", u.Severity)
	add("notes", u.Notes)
	add("status", u.Status)
	if u.ExpiresAt != nil {
		v := ""
		if !u.ExpiresAt.IsZero() {
			v = u.ExpiresAt.UTC().Format(time.RFC3339Nano)
		}
		args = append(args, "expires_at", v)
	}
	if len(args) == 0 {
		return nil
	}
	n, err := s.rdb.Eval(ctx, updatePOILua, []string{s.keys.POI(id), s.keys.Tombstone(id)}, args...).Int()
	if err != nil {
		return fmt.Errorf("update poi %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("update poi %s: %w", id, ErrNotFound)
	}
	return nil
}

// updatePOILua writes fields only into a live POI's hash: HSET on a
// deleted POI would recreate it.
const updatePOILua = `
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`

// AddRefs adds references to a live POI, numbering them after every
// reference it ever had, unless that takes it over limit references of
// the kind (photos or learned: counted apart, learned ones by the "s" in
// their embedding id). It returns the POI as stored now; the POI goes into
// the control outbox in the same step, so every replica hears of it.
func (s *Store) AddRefs(ctx context.Context, id string, refs []Ref, learned bool, limit int) (POI, []string, error) {
	kind := "photo"
	if learned {
		kind = "learned"
	}
	k := s.keys
	keys := []string{k.POI(id), k.POIRefs(id), k.POIRefSeq(id), k.ControlOutbox(), k.Tombstone(id)}
	// Photo keys are named by ids the script gives out: it builds them
	// from this prefix (one Redis, no cluster slots to declare).
	args := []any{kind, limit, len(refs), strings.TrimPrefix(id, "poi-"), time.Now().UnixMilli(), id, k.POIPhoto(id, "")}
	for _, r := range refs {
		args = append(args, EncodeVector(r.Vector), r.Photo)
	}
	res, err := s.refsScript.Run(ctx, s.rdb, keys, args...).StringSlice()
	if err != nil {
		return POI{}, nil, fmt.Errorf("add references to %s: %w", id, err)
	}
	switch res[0] {
	case "missing":
		return POI{}, nil, fmt.Errorf("add references to %s: %w", id, ErrNotFound)
	case "full":
		return POI{}, nil, fmt.Errorf("add references to %s: %s of the %d %s references allowed: %w", id, res[1], limit, kind, ErrTooMany)
	}
	p, err := s.GetPOI(ctx, id)
	return p, res[1:], err
}

// refsLua: KEYS: metadata, refs, refseq, outbox, tombstone. ARGV: kind,
// limit, count, id hex, now (ms), POI id, photo key prefix, then vector and
// photo per reference.
const refsLua = `
if redis.call('EXISTS', KEYS[5]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local kind, limit, n, hex = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local have = 0
for _, e in ipairs(redis.call('HKEYS', KEYS[2])) do
  local learned = string.find(e, '-s%d+$') ~= nil
  if (kind == 'learned') == learned then have = have + 1 end
end
if have + n > limit then return {'full', tostring(have)} end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], redis.call('HGET', KEYS[1], 'refs') or '0')
end
local out = {'ok'}
for i = 1, n do
  local seq = redis.call('INCR', KEYS[3])
  local eid = 'emb-' .. hex .. '-' .. seq
  if kind == 'learned' then eid = 'emb-' .. hex .. '-s' .. seq end
  redis.call('HSET', KEYS[2], eid, ARGV[7 + 2 * i - 1])
  if ARGV[7 + 2 * i] ~= '' then redis.call('SET', ARGV[7] .. eid, ARGV[7 + 2 * i]) end
  table.insert(out, eid)
end
redis.call('HINCRBY', KEYS[1], 'refs_version', 1)
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
return out
`

// RemoveRef deletes one reference of a live POI, never its last one
// (ErrLastReference); an unknown POI or reference is ErrNotFound. It
// returns the POI as stored now, and puts it in the control outbox.
func (s *Store) RemoveRef(ctx context.Context, id, embID string) (POI, error) {
	k := s.keys
	res, err := s.rdb.Eval(ctx, removeRefLua, []string{k.POI(id), k.POIRefs(id), k.POIPhoto(id, embID), k.ControlOutbox(), k.Tombstone(id)},
		embID, id, time.Now().UnixMilli()).Text()
	if err != nil {
		return POI{}, fmt.Errorf("remove reference %s of %s: %w", embID, id, err)
	}
	switch res {
	case "missing":
		return POI{}, fmt.Errorf("remove reference %s of %s: %w", embID, id, ErrNotFound)
	case "last":
		return POI{}, fmt.Errorf("remove reference %s of %s: %w", embID, id, ErrLastReference)
	}
	return s.GetPOI(ctx, id)
}

const removeRefLua = `
if redis.call('EXISTS', KEYS[5]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 'missing' end
if redis.call('HLEN', KEYS[2]) <= 1 then return 'last' end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('HINCRBY', KEYS[1], 'refs_version', 1)
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
return 'ok'
`

// POI statuses: an inactive POI raises no alerts and stays searchable.
const (
	StatusActive   = "active"
	StatusInactive = "inactive"
)
