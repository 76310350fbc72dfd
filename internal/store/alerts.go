package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Claim outcomes of ClaimAlert.
const (
	ClaimNew      = "new"      // first time: raise the alert
	ClaimReplay   = "replay"   // the same alert again (a redelivery): re-send it, idempotently
	ClaimDup      = "dup"      // this track already alerted for this POI
	ClaimCooldown = "cooldown" // the POI alerted on this camera within the cooldown
	ClaimErased   = "erased"   // the POI is being or was erased: nothing was written
)

// claimScript decides atomically whether a sighting raises an alert, so two
// alert workers racing on the same track cannot both raise one. It checks
// the POI's tombstone in the same step: a worker that found the POI just
// before its erasure claims nothing, so it cannot recreate the markers the
// purge removes. On a new
// claim it also counts the POI's alerts and remembers the count before this
// one, so that a replay reports the same total_previous_matches.
const claimLua = `
local dedup, cooldown, matches = KEYS[1], KEYS[2], KEYS[3]
local id, ttl, cool = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[4]) == 1 then return {'erased', ''} end
local cur = redis.call('GET', dedup)
if cur then
  local sep = string.find(cur, '|', 1, true)
  if string.sub(cur, 1, sep - 1) == id then return {'replay', string.sub(cur, sep + 1)} end
  return {'dup', ''}
end
if redis.call('SET', cooldown, id, 'NX', 'PX', cool) == false then
  redis.call('SET', dedup, 'suppressed|0', 'PX', ttl)
  return {'cooldown', ''}
end
local prev = tonumber(redis.call('GET', matches) or '0')
redis.call('INCR', matches)
redis.call('SET', dedup, id .. '|' .. prev, 'PX', ttl)
return {'new', tostring(prev)}
`

// ClaimAlert applies dedup per (track, POI) and cooldown per (POI, camera).
// It returns the outcome and, for new and replayed claims, the number of
// earlier alerts of the POI.
func (s *Store) ClaimAlert(ctx context.Context, alertID, track, poi, camera string, retention, cooldown time.Duration) (string, int64, error) {
	k := s.keys
	sc, c, done := s.scripter(ctx)
	defer done()
	res, err := s.claimScript.Run(ctx, sc, []string{k.AlertDedup(track, poi), k.AlertCooldown(poi, camera), k.POIMatches(poi), k.Tombstone(poi)},
		alertID, retention.Milliseconds(), cooldown.Milliseconds()).StringSlice()
	if err != nil {
		return "", 0, fmt.Errorf("claim alert %s: %w", alertID, err)
	}
	if res[0] == "new" {
		// Unconfirmed, the claim is retried: a claim that survived the
		// failover answers replay, one that did not is made again.
		if err := s.replicated(ctx, c, "alert claim "+alertID); err != nil {
			return "", 0, fmt.Errorf("claim alert: %w", err)
		}
	}
	var prev int64
	if res[1] != "" {
		fmt.Sscan(res[1], &prev)
	}
	return res[0], prev, nil
}

// MaxRecentAlerts bounds the recent list; the API returns the newest 50.
const MaxRecentAlerts = 500

// storeAlertScript stores an alert once: a replay finds the record and
// leaves the list alone, so the list never holds an alert twice. Nothing is
// stored for an erased POI (-1).
const storeAlertLua = `
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if ARGV[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[2]) end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
  return 1
end
return 0
`

// StoreAlert records an alert (JSON) of poi and puts it at the head of the
// recent list; it reports whether it was new. vec, the sighting's face, is
// kept beside it for as long (a dismissal turns it into a negative, a
// confirmation into a reference). For an erased POI it stores nothing and
// returns ErrErased.
func (s *Store) StoreAlert(ctx context.Context, alertID, poi string, alertJSON []byte, vec []float32, ttl time.Duration) (bool, error) {
	n, err := s.storeAlertScript.Run(ctx, s.rdb, []string{s.keys.Alert(alertID), s.keys.AlertsRecent(), s.keys.Tombstone(poi), s.keys.AlertVector(alertID)},
		alertJSON, ttl.Milliseconds(), MaxRecentAlerts, EncodeVector(vec)).Int()
	if err != nil {
		return false, fmt.Errorf("store alert %s: %w", alertID, err)
	}
	if n < 0 {
		return false, fmt.Errorf("store alert %s: %w", alertID, ErrErased)
	}
	return n == 1, nil
}

// RecentAlerts returns up to n alerts, newest first.
func (s *Store) RecentAlerts(ctx context.Context, n int) ([]json.RawMessage, error) {
	vals, err := s.rdb.LRange(ctx, s.keys.AlertsRecent(), 0, int64(n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("recent alerts: %w", err)
	}
	out := make([]json.RawMessage, 0, len(vals))
	for _, v := range vals {
		out = append(out, json.RawMessage(v))
	}
	return out, nil
}

// DeleteAlerts removes every alert record and the recent list, and returns
// how many alert records there were.
func (s *Store) DeleteAlerts(ctx context.Context) (int64, error) {
	var deleted int64
	it := s.rdb.Scan(ctx, 0, s.keys.AlertPattern(), 500).Iterator()
	batch := make([]string, 0, 500)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := s.rdb.Del(ctx, batch...).Result()
		deleted += n
		batch = batch[:0]
		return err
	}
	for it.Next(ctx) {
		batch = append(batch, it.Val())
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return deleted, fmt.Errorf("delete alerts: %w", err)
			}
		}
	}
	if err := errors.Join(it.Err(), flush()); err != nil {
		return deleted, fmt.Errorf("delete alerts: %w", err)
	}
	if err := s.rdb.Del(ctx, s.keys.AlertsRecent()).Err(); err != nil {
		return deleted, fmt.Errorf("delete alerts list: %w", err)
	}
	// The faces kept beside the alerts go with them (not counted: the
	// seed's deleted_count counts alert records).
	vit := s.rdb.Scan(ctx, 0, s.keys.AlertVector("alert-*"), 500).Iterator()
	var vecs []string
	for vit.Next(ctx) {
		vecs = append(vecs, vit.Val())
	}
	if err := vit.Err(); err != nil {
		return deleted, fmt.Errorf("delete alert vectors: %w", err)
	}
	for len(vecs) > 0 {
		n := min(len(vecs), 500)
		if err := s.rdb.Del(ctx, vecs[:n]...).Err(); err != nil {
			return deleted, fmt.Errorf("delete alert vectors: %w", err)
		}
		vecs = vecs[n:]
	}
	return deleted, nil
}

// AlertsOf returns the recent alerts of one POI (used to prove deletion).
func (s *Store) AlertsOf(ctx context.Context, poi string) ([]json.RawMessage, error) {
	all, err := s.RecentAlerts(ctx, MaxRecentAlerts)
	if err != nil {
		return nil, err
	}
	var out []json.RawMessage
	for _, a := range all {
		if strings.Contains(string(a), `"poi_id":"`+poi+`"`) {
			out = append(out, a)
		}
	}
	return out, nil
}

// AlertSent reports whether the alert was already delivered on MQTT.
func (s *Store) AlertSent(ctx context.Context, alertID string) (bool, error) {
	return s.Exists(ctx, s.keys.AlertSent(alertID))
}

// MarkAlertSent records the MQTT delivery of an alert of poi, so that a
// redelivered sighting does not send it again. The marker names the POI (in
// the alert id), so none is written once the POI is erased (ErrErased).
func (s *Store) MarkAlertSent(ctx context.Context, alertID, poi string, ttl time.Duration) error {
	n, err := s.markSentScript.Run(ctx, s.rdb, []string{s.keys.AlertSent(alertID), s.keys.Tombstone(poi)}, ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("mark alert %s sent: %w", alertID, err)
	}
	if n == 0 {
		return fmt.Errorf("mark alert %s sent: %w", alertID, ErrErased)
	}
	return nil
}

// markSentLua: KEYS: sent marker, tombstone. ARGV: ttl (ms).
const markSentLua = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
return 1
`
