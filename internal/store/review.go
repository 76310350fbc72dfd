package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrAlertChanged is a compare-and-set that kept losing to other writers.
var ErrAlertChanged = errors.New("alert changed meanwhile")

// Alert returns one alert record (JSON).
func (s *Store) Alert(ctx context.Context, id string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.keys.Alert(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("alert %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("alert %s: %w", id, err)
	}
	return b, nil
}

// AlertVector returns the face an alert was raised on.
func (s *Store) AlertVector(ctx context.Context, id string) ([]float32, error) {
	b, err := s.rdb.Get(ctx, s.keys.AlertVector(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("alert %s vector: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("alert %s vector: %w", id, err)
	}
	return DecodeVector(b)
}

// maxUpdateAttempts bounds the compare-and-set retries of UpdateAlert: only
// a concurrent review of the same alert makes one lose.
const maxUpdateAttempts = 5

// UpdateAlert rewrites an alert record, and its entry in the recent list,
// with change(old): a compare-and-set, retried when another writer changed
// the record between the read and the write. An error from change is
// returned as it is, and nothing is written.
func (s *Store) UpdateAlert(ctx context.Context, id string, change func(old []byte) ([]byte, error)) ([]byte, error) {
	for range maxUpdateAttempts {
		old, err := s.Alert(ctx, id)
		if err != nil {
			return nil, err
		}
		next, err := change(old)
		if err != nil {
			return nil, err
		}
		n, err := s.updateAlertScript.Run(ctx, s.rdb, []string{s.keys.Alert(id), s.keys.AlertsRecent()}, old, next).Int()
		if err != nil {
			return nil, fmt.Errorf("update alert %s: %w", id, err)
		}
		if n == 1 {
			return next, nil
		}
	}
	return nil, fmt.Errorf("update alert %s: %w", id, ErrAlertChanged)
}

// updateAlertLua: KEYS: alert record, recent list. ARGV: the JSON read,
// the JSON to write. The list entry is found by its old JSON (LPOS), so the
// list keeps its order; an alert trimmed off the list is updated alone.
const updateAlertLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
local at = redis.call('LPOS', KEYS[2], ARGV[1])
if at then redis.call('LSET', KEYS[2], at, ARGV[2]) end
return 1
`

// Negative is a face dismissed as not the POI.
type Negative struct {
	AlertID string
	Vector  []float32
	// Expires is when it is forgotten; zero when pinned.
	Expires time.Time
}

// AddNegative keeps a dismissed alert's face as a negative of poi until
// ttl passes, or for as long as the POI lives when pinned. Nothing is
// written for an erased POI (ErrErased).
func (s *Store) AddNegative(ctx context.Context, poi, alertID string, vec []float32, ttl time.Duration, pinned bool, now time.Time) error {
	var exp int64
	if !pinned {
		exp = now.Add(ttl).UnixMilli()
	}
	val := fmt.Sprintf("%016d", exp) + string(EncodeVector(vec))
	n, err := s.negativeScript.Run(ctx, s.rdb, []string{s.keys.POINegatives(poi), s.keys.Tombstone(poi)}, alertID, val, now.UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("add negative of %s: %w", poi, err)
	}
	if n == 0 {
		return fmt.Errorf("add negative of %s: %w", poi, ErrErased)
	}
	return nil
}

// negativeLua: KEYS: negatives hash, tombstone. ARGV: alert id, value,
// now (ms). It drops expired entries and sets the key's TTL to the latest
// expiry, none while a pinned entry remains, so the key never outlives
// what it must keep.
const negativeLua = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local now, latest, pinned = tonumber(ARGV[3]), 0, false
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local exp = tonumber(string.sub(all[i + 1], 1, 16))
  if exp == 0 then pinned = true
  elseif exp <= now then redis.call('HDEL', KEYS[1], all[i])
  elseif exp > latest then latest = exp end
end
if pinned then redis.call('PERSIST', KEYS[1])
elseif latest > 0 then redis.call('PEXPIREAT', KEYS[1], latest) end
return 1
`

// Negatives returns the POI's live negatives.
func (s *Store) Negatives(ctx context.Context, poi string, now time.Time) ([]Negative, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.POINegatives(poi)).Result()
	if err != nil {
		return nil, fmt.Errorf("negatives of %s: %w", poi, err)
	}
	return parseNegatives(poi, m, now)
}

func parseNegatives(poi string, m map[string]string, now time.Time) ([]Negative, error) {
	out := make([]Negative, 0, len(m))
	for id, raw := range m {
		if len(raw) < 16 {
			return nil, fmt.Errorf("negative %s of %s: %d bytes", id, poi, len(raw))
		}
		exp, err := strconv.ParseInt(raw[:16], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("negative %s of %s: expiry: %w", id, poi, err)
		}
		n := Negative{AlertID: id}
		if exp != 0 {
			n.Expires = time.UnixMilli(exp)
			if !n.Expires.After(now) {
				continue
			}
		}
		if n.Vector, err = DecodeVector([]byte(raw[16:])); err != nil {
			return nil, fmt.Errorf("negative %s of %s: %w", id, poi, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// POIForAlert returns the POI and its live negatives in one round trip:
// the alert stage needs both for every candidate match.
func (s *Store) POIForAlert(ctx context.Context, id string, now time.Time) (POI, []Negative, error) {
	var meta, negs *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		meta = p.HGetAll(ctx, s.keys.POI(id))
		negs = p.HGetAll(ctx, s.keys.POINegatives(id))
		return nil
	})
	if err != nil {
		return POI{}, nil, fmt.Errorf("get poi %s for alert: %w", id, err)
	}
	if len(meta.Val()) == 0 {
		return POI{}, nil, fmt.Errorf("poi %s: %w", id, ErrNotFound)
	}
	p, err := parsePOI(meta.Val())
	if err != nil {
		return POI{}, nil, err
	}
	n, err := parseNegatives(id, negs.Val(), now)
	if err != nil {
		return POI{}, nil, err
	}
	return p, n, nil
}

// RemoveNegative forgets one negative of poi.
func (s *Store) RemoveNegative(ctx context.Context, poi, alertID string) error {
	if err := s.rdb.HDel(ctx, s.keys.POINegatives(poi), alertID).Err(); err != nil {
		return fmt.Errorf("remove negative %s of %s: %w", alertID, poi, err)
	}
	return nil
}

// AllAlerts returns every alert record still kept (within retention), in
// no order: the recent list is trimmed, statistics need them all.
func (s *Store) AllAlerts(ctx context.Context) ([][]byte, error) {
	var out [][]byte
	it := s.rdb.Scan(ctx, 0, s.keys.AlertPattern(), 500).Iterator()
	batch := make([]string, 0, 500)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		vals, err := s.rdb.MGet(ctx, batch...).Result()
		if err != nil {
			return err
		}
		for _, v := range vals {
			if str, ok := v.(string); ok {
				out = append(out, []byte(str))
			}
		}
		batch = batch[:0]
		return nil
	}
	for it.Next(ctx) {
		batch = append(batch, it.Val())
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return nil, fmt.Errorf("all alerts: %w", err)
			}
		}
	}
	if err := errors.Join(it.Err(), flush()); err != nil {
		return nil, fmt.Errorf("all alerts: %w", err)
	}
	return out, nil
}

// NegativesTTL is how long the POI's negatives key lives (-1: pinned, for
// good; -2: none).
func (s *Store) NegativesTTL(ctx context.Context, poi string) (time.Duration, error) {
	d, err := s.rdb.PTTL(ctx, s.keys.POINegatives(poi)).Result()
	if err != nil {
		return 0, fmt.Errorf("negatives ttl of %s: %w", poi, err)
	}
	return d, nil
}
