package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound is returned for an id Redis does not hold.
var ErrNotFound = errors.New("not found")

// POI is the metadata of an enrolled person of interest.
type POI struct {
	ID        string
	Severity  string
	Notes     string
	Status    string
	Model     string
	CreatedAt time.Time
	Refs      []Ref
	// ExpiresAt, when set, is when the expiry loop deactivates or erases
	// the POI.
	ExpiresAt time.Time
	// RefsVersion counts the changes of the references since enrolment
	// (0: as enrolled); it names their control event.
	RefsVersion int64
}

// Ref is one reference face of a POI.
type Ref struct {
	EmbeddingID string
	Vector      []float32
	// Photo is the JPEG of the face used (may be empty when listing).
	Photo []byte
}

// EncodeVector is the stored form of a vector: little-endian float32s.
func EncodeVector(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// DecodeVector reverses EncodeVector.
func DecodeVector(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("vector of %d bytes", len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

func parsePOI(m map[string]string) (POI, error) {
	created, err := time.Parse(time.RFC3339Nano, m["created_at"])
	if err != nil {
		return POI{}, fmt.Errorf("poi %s: created_at %q: %w", m["poi_id"], m["created_at"], err)
	}
	p := POI{ID: m["poi_id"], Severity: m["severity"], Notes: m["notes"], Status: m["status"], Model: m["model"], CreatedAt: created}
	if v := m["expires_at"]; v != "" {
		if p.ExpiresAt, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return POI{}, fmt.Errorf("poi %s: expires_at %q: %w", m["poi_id"], v, err)
		}
	}
	if v := m["refs_version"]; v != "" {
		if p.RefsVersion, err = strconv.ParseInt(v, 10, 64); err != nil {
			return POI{}, fmt.Errorf("poi %s: refs_version %q: %w", m["poi_id"], v, err)
		}
	}
	return p, nil
}

// GetPOI returns a POI's metadata and reference vectors (without photos).
func (s *Store) GetPOI(ctx context.Context, id string) (POI, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.POI(id)).Result()
	if err != nil {
		return POI{}, fmt.Errorf("get poi %s: %w", id, err)
	}
	if len(m) == 0 {
		return POI{}, fmt.Errorf("poi %s: %w", id, ErrNotFound)
	}
	p, err := parsePOI(m)
	if err != nil {
		return POI{}, err
	}
	refs, err := s.rdb.HGetAll(ctx, s.keys.POIRefs(id)).Result()
	if err != nil {
		return POI{}, fmt.Errorf("get poi %s refs: %w", id, err)
	}
	for eid, raw := range refs {
		v, err := DecodeVector([]byte(raw))
		if err != nil {
			return POI{}, fmt.Errorf("poi %s ref %s: %w", id, eid, err)
		}
		p.Refs = append(p.Refs, Ref{EmbeddingID: eid, Vector: v})
	}
	slices.SortFunc(p.Refs, func(a, b Ref) int { return strings.Compare(a.EmbeddingID, b.EmbeddingID) })
	return p, nil
}

// ListPOIs returns every POI, newest first, with reference vectors when
// withRefs (the POI index rebuild needs them; the API list does not).
func (s *Store) ListPOIs(ctx context.Context, withRefs bool) ([]POI, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.keys.POIIndex(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list pois: %w", err)
	}
	out := make([]POI, 0, len(ids))
	if !withRefs {
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids {
				p.HGetAll(ctx, s.keys.POI(id))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list pois: %w", err)
		}
		for _, c := range cmds {
			m := c.(*redis.MapStringStringCmd).Val()
			if len(m) == 0 {
				continue // deleted between the two reads
			}
			p, err := parsePOI(m)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
	for _, id := range ids {
		p, err := s.GetPOI(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// DeletePOIData removes everything else that names the POI: reference
// vectors and photos (the embedding mappings), its match counter, recorded
// appearances, alert records (and their place in the recent list), dedup and
// cooldown markers. It is idempotent: a purge that failed half-way runs it
// again.
func (s *Store) DeletePOIData(ctx context.Context, id string) error {
	keys, err := s.KeysNaming(ctx, id)
	if err != nil {
		return fmt.Errorf("delete poi %s data: %w", id, err)
	}
	listed, err := s.AlertsOf(ctx, id)
	if err != nil {
		return fmt.Errorf("delete poi %s data: %w", id, err)
	}
	for _, a := range listed {
		if err := s.rdb.LRem(ctx, s.keys.AlertsRecent(), 0, []byte(a)).Err(); err != nil {
			return fmt.Errorf("delete poi %s alert: %w", id, err)
		}
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := s.rdb.Del(ctx, keys[:n]...).Err(); err != nil {
			return fmt.Errorf("delete poi %s data: %w", id, err)
		}
		keys = keys[n:]
	}
	return nil
}

// KeysNaming returns every key whose name contains id as a whole token (by
// SCAN): the proof that a deletion left nothing behind. Ids are "poi-" and
// hex, and keys join their parts with ':' and '-', so a hex digit on either
// side means the match is part of a longer id (a legacy 8-digit id is a
// prefix of nothing else then).
func (s *Store) KeysNaming(ctx context.Context, id string) ([]string, error) {
	var out []string
	it := s.rdb.Scan(ctx, 0, s.keys.prefix+"*"+id+"*", 500).Iterator()
	for it.Next(ctx) {
		if namesWhole(it.Val(), id) {
			out = append(out, it.Val())
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("scan keys naming %s: %w", id, err)
	}
	return out, nil
}

// namesWhole reports whether s contains id with no hex digit right before
// or after it.
func namesWhole(s, id string) bool {
	isHex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
	for i := 0; ; {
		j := strings.Index(s[i:], id)
		if j < 0 {
			return false
		}
		at, end := i+j, i+j+len(id)
		if (at == 0 || !isHex(s[at-1])) && (end == len(s) || !isHex(s[end])) {
			return true
		}
		i = at + 1
	}
}

// Appearance is a POI's best match on one track.
type Appearance struct {
	TrackID    string
	Similarity float64
	BestTime   time.Time
}

// RecordAppearance keeps the best similarity of a POI on a track, trims
// the POI's appearances older than ttl before this one, and extends the
// track's record, thumbnail and frames (written with the unmatched
// retention) to ttl: a track that matched is kept as long as the POI's
// appearances are. It writes
// nothing for an erased POI (ErrErased): an alert worker that looked the POI
// up just before its erasure must not recreate what the purge removed.
func (s *Store) RecordAppearance(ctx context.Context, poi string, a Appearance, ttl time.Duration) error {
	k := s.keys
	n, err := s.appearanceScript.Run(ctx, s.rdb, []string{k.POIAppearance(poi, a.TrackID), k.POIAppearances(poi), k.Tombstone(poi),
		k.Track(a.TrackID), k.Thumbnail(a.TrackID), k.TrackFrame(a.TrackID, "entry"), k.TrackFrame(a.TrackID, "last"), k.TrackExitFrame(a.TrackID)},
		strconv.FormatFloat(a.Similarity, 'f', 6, 64), a.BestTime.UTC().Format(time.RFC3339Nano),
		a.BestTime.UnixMilli(), a.TrackID, int64(ttl/time.Second), a.BestTime.Add(-ttl).UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("record appearance %s on %s: %w", poi, a.TrackID, err)
	}
	if n == 0 {
		return fmt.Errorf("record appearance %s on %s: %w", poi, a.TrackID, ErrErased)
	}
	return nil
}

// appearanceLua keeps a track's best similarity for a POI in one step on
// the server: sightings of one track race each other on every alert
// worker, and an optimistic transaction made them retry each other.
// KEYS: appearance hash, appearances zset, tombstone, then the track's
// record, thumbnail, entry, last and exit frames. ARGV: similarity, best
// time, best time (ms), track, ttl (s), trim before (ms).
const appearanceLua = `
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local prev = redis.call('HGET', KEYS[1], 'similarity')
if not prev or tonumber(ARGV[1]) > tonumber(prev) then
  redis.call('HSET', KEYS[1], 'similarity', ARGV[1], 'best_match_time', ARGV[2])
end
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
for i = 4, 8 do
  redis.call('EXPIRE', KEYS[i], ARGV[5], 'GT')
end
return 1
`

// Appearances returns a POI's appearances whose track was seen in [from, to].
func (s *Store) Appearances(ctx context.Context, poi string) ([]Appearance, error) {
	tracks, err := s.rdb.ZRange(ctx, s.keys.POIAppearances(poi), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("appearances of %s: %w", poi, err)
	}
	out := make([]Appearance, 0, len(tracks))
	for _, t := range tracks {
		m, err := s.rdb.HGetAll(ctx, s.keys.POIAppearance(poi, t)).Result()
		if err != nil {
			return nil, fmt.Errorf("appearance %s/%s: %w", poi, t, err)
		}
		if len(m) == 0 {
			continue
		}
		sim, _ := strconv.ParseFloat(m["similarity"], 64)
		best, _ := time.Parse(time.RFC3339Nano, m["best_match_time"])
		out = append(out, Appearance{TrackID: t, Similarity: sim, BestTime: best})
	}
	return out, nil
}

// POIPhoto returns the reference face JPEG of one of a POI's embeddings.
func (s *Store) POIPhoto(ctx context.Context, id, embeddingID string) ([]byte, error) {
	return s.getBytes(ctx, s.keys.POIPhoto(id, embeddingID))
}
