package store

// The Redis key layout of the whole service lives in this file. Every key is
// under the configured prefix. "Owner" is the component that writes the key.
//
//	poi:index                       ZSET poi_id by created_at (unix ms)  owner: enrol  TTL: none
//	poi:{poi}                       HASH POI metadata                    owner: enrol  TTL: none
//	poi:{poi}:refs                  HASH embedding_id -> float32 LE vec  owner: enrol  TTL: none
//	poi:{poi}:photo:{embedding_id}  STRING reference face JPEG           owner: enrol  TTL: none
//	poi:{poi}:matches               STRING count of alerts for the POI   owner: alert  TTL: none
//	poi:{poi}:appearances           ZSET track_id by best match time     owner: alert  TTL: retention; entries older than retention trimmed at each write
//	poi:{poi}:appearance:{track}    HASH similarity, best_match_time     owner: alert  TTL: retention
//	alerts:recent                   LIST alert JSON, newest first        owner: alert  TTL: none, trimmed
//	alert:{alert_id}                STRING alert JSON                    owner: alert, review (api) TTL: retention
//	alert:vec:{alert_id}            STRING the sighting's face, float32 LE owner: alert TTL: retention
//	poi:{poi}:negatives             HASH alert_id -> 16-digit expiry (unix ms, 0 = pinned) + float32 LE vector: faces dismissed as not the POI owner: review (api) TTL: the latest expiry; none while one is pinned (expired entries are dropped on every read and write)
//	poi:{poi}:refseq                STRING last reference number given out owner: api  TTL: none
//	alert:dedup:{track}:{poi}       STRING marker                        owner: alert  TTL: retention
//	alertsent:{alert_id}            STRING marker: sent on MQTT          owner: alert  TTL: retention
//	alert:cooldown:{poi}:{camera}   STRING marker                        owner: alert  TTL: cooldown
//	track:state:{camera}            STRING tracker state JSON (open tracks, last applied sequence) owner: index TTL: unmatched retention
//	track:version:{camera}          STRING commits of the tracker state (compare-and-set) owner: index TTL: unmatched retention
//	zone:open:{object}:{region}     STRING pending zone entry JSON       owner: zones  TTL: retention
//	track:{track}                   HASH track record                    owner: index  TTL: unmatched retention; retention once it matched a POI (*)
//	track:{track}:zones             LIST zone appearance JSON            owner: zones  TTL: retention
//	detection:{id}                  HASH sample -> track, time, bbox     owner: index  TTL: unmatched retention
//	camera:lastseen                 ZSET camera_id by last seen (unix ms) owner: bridge TTL: cameras.idle_ttl (entries too), at most the admitted cameras
//	                                (replaces camera:seen, a HASH without TTL: delete it after upgrading)
//	camera:latest:{camera}          STRING latest frame JPEG             owner: frames TTL: 60s
//	thumb:{track}                   STRING face thumbnail JPEG           owner: index  TTL: unmatched retention (*)
//	apikey:{key_id}                 HASH API key record (name, role, SHA-256 of the key, times) owner: api, poi keys  TTL: none (revoked keys stay listed)
//	apikey:ids                      ZSET key_id by created_at (unix ms)  owner: api, poi keys  TTL: none
//	apikey:names                    HASH name -> key_id of keys not revoked (names are unique among them) owner: api, poi keys TTL: none
//	session:{sha256 of token}       HASH key_id, csrf (SHA-256 of the CSRF token), created_at owner: api  TTL: auth.session_ttl
//	outbox:control                  ZSET poi_id by enrol time: enrolments not yet on POI_CONTROL owner: enrol TTL: none (entries cleared once published)
//	erase:pending                   ZSET poi_id by erase time: purges not yet finished owner: erase TTL: none (entries cleared once purged)
//	erase:tombstone:{sha256(poi)}   STRING "purging" or "purged"         owner: erase  TTL: erasure.tombstone_ttl
//
// (*) "unmatched retention" is pipeline.unmatched_retention (by default the
// retention). RecordAppearance extends a matched track's record, thumbnail
// and frames to the retention; the tracker's writes only ever lengthen a
// TTL (EXPIRE NX, then GT), so they do not shorten it again.
//
// A tombstone is named by a hash of the POI id, not the id: it must outlive
// the purge (it stops racing writers from recreating the POI's keys), yet
// once the purge is done no key may name the POI.
//
// Frame namespace: the only keys GET /api/v1/frames/{encoded_key} serves.
//
//	track:frame:{track}:{entry|last}     STRING JPEG  owner: index  TTL: unmatched retention (*)
//	detection:exit_frame:{track}         STRING JPEG  owner: index  TTL: unmatched retention (*)
//	detection:frame:{id}                 STRING JPEG  owner: index  TTL: retention
//	zone:frame:{track}:{zone}:{entry ms}:{entry|exit} STRING JPEG owner: zones TTL: retention

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Keys builds every key under one prefix.
type Keys struct{ prefix string }

// NewKeys returns the key builder for prefix ("" for none).
func NewKeys(prefix string) Keys { return Keys{prefix: prefix} }

func (k Keys) k(parts ...string) string { return k.prefix + strings.Join(parts, ":") }

// POIIndex is the ZSET of every POI id by creation time.
func (k Keys) POIIndex() string { return k.k("poi", "index") }

// POI is a POI's metadata hash.
func (k Keys) POI(id string) string { return k.k("poi", id) }

// POIRefs holds a POI's reference vectors by embedding id.
func (k Keys) POIRefs(id string) string { return k.k("poi", id, "refs") }

// POIPhoto is the aligned reference face of one embedding.
func (k Keys) POIPhoto(id, embID string) string { return k.k("poi", id, "photo", embID) }

// POIMatches counts a POI's alerts.
func (k Keys) POIMatches(id string) string { return k.k("poi", id, "matches") }

// POIAppearances is the ZSET of tracks a POI was matched on.
func (k Keys) POIAppearances(id string) string { return k.k("poi", id, "appearances") }

// POIAppearance holds the best match of a POI on one track.
func (k Keys) POIAppearance(id, track string) string { return k.k("poi", id, "appearance", track) }

// AlertsRecent is the list of recent alerts, newest first.
func (k Keys) AlertsRecent() string { return k.k("alerts", "recent") }

// Alert is one alert record.
func (k Keys) Alert(id string) string { return k.k("alert", id) }

// AlertPattern matches every alert record (for SCAN).
func (k Keys) AlertPattern() string { return k.k("alert", "alert-*") }

// AlertVector is the face of the sighting an alert was raised on.
func (k Keys) AlertVector(id string) string { return k.k("alert", "vec", id) }

// POINegatives holds the faces dismissed as not this POI.
func (k Keys) POINegatives(id string) string { return k.k("poi", id, "negatives") }

// POIRefSeq numbers a POI's references added after enrolment.
func (k Keys) POIRefSeq(id string) string { return k.k("poi", id, "refseq") }

// AlertSent marks an alert as delivered on MQTT.
func (k Keys) AlertSent(id string) string { return k.k("alertsent", id) }

// AlertDedup marks that a track already alerted for a POI.
func (k Keys) AlertDedup(track, poi string) string { return k.k("alert", "dedup", track, poi) }

// AlertCooldown marks a recent alert for a POI on a camera.
func (k Keys) AlertCooldown(poi, camera string) string { return k.k("alert", "cooldown", poi, camera) }

// ControlOutbox holds the POIs written to Redis whose enrolment event is not
// yet stored on POI_CONTROL.
func (k Keys) ControlOutbox() string { return k.k("outbox", "control") }

// ErasePending holds the POIs whose purge has begun and not finished.
func (k Keys) ErasePending() string { return k.k("erase", "pending") }

// Tombstone marks an erased POI; see the layout above for why it is hashed.
func (k Keys) Tombstone(poi string) string {
	h := sha256.Sum256([]byte(poi))
	return k.k("erase", "tombstone", hex.EncodeToString(h[:16]))
}

// TrackerState is the tracker's durable state for one camera.
func (k Keys) TrackerState(camera string) string { return k.k("track", "state", camera) }

// TrackerStatePattern matches every camera's tracker state (SCAN).
func (k Keys) TrackerStatePattern() string { return k.k("track", "state", "*") }

// TrackerVersion counts the commits of a camera's tracker state; a commit
// names the version it read, so two owners of one camera cannot both win.
func (k Keys) TrackerVersion(camera string) string { return k.k("track", "version", camera) }

// ZoneOpen is a zone entry waiting for its exit.
func (k Keys) ZoneOpen(object, region string) string { return k.k("zone", "open", object, region) }

// Track is a track record.
func (k Keys) Track(track string) string { return k.k("track", track) }

// TrackZones lists a track's zone appearances.
func (k Keys) TrackZones(track string) string { return k.k("track", track, "zones") }

// Detection is one sample of the all-detections index.
func (k Keys) Detection(id string) string { return k.k("detection", id) }

// CamerasSeen holds the camera ids seen on MQTT by when.
func (k Keys) CamerasSeen() string { return k.k("camera", "lastseen") }

// CameraLatest is a camera's most recent frame.
func (k Keys) CameraLatest(camera string) string { return k.k("camera", "latest", camera) }

// Thumbnail is a track's face thumbnail.
func (k Keys) Thumbnail(track string) string { return k.k("thumb", track) }

// TrackFrame is a track's entry or last-seen frame.
func (k Keys) TrackFrame(track, which string) string { return k.k("track", "frame", track, which) }

// TrackExitFrame is a track's exit frame.
func (k Keys) TrackExitFrame(track string) string { return k.k("detection", "exit_frame", track) }

// DetectionFrame is the frame of one sample.
func (k Keys) DetectionFrame(id string) string { return k.k("detection", "frame", id) }

// ZoneFrame is the entry or exit frame of one visit of a track to a zone.
// The visit's entry time (unix ms) is part of the key: a later visit of the
// same zone must not overwrite the frames of an earlier one.
func (k Keys) ZoneFrame(track, zone string, entry time.Time, which string) string {
	return k.k("zone", "frame", track, zone, strconv.FormatInt(entry.UnixMilli(), 10), which)
}

// APIKey is one API key's record.
func (k Keys) APIKey(id string) string { return k.k("apikey", id) }

// APIKeyIDs lists every API key id by creation time.
func (k Keys) APIKeyIDs() string { return k.k("apikey", "ids") }

// APIKeyNames maps the names of keys not revoked to their ids.
func (k Keys) APIKeyNames() string { return k.k("apikey", "names") }

// Session is a browser session, named by the hash of its token (a leaked
// Redis dump does not hand out live sessions).
func (k Keys) Session(tokenHash string) string { return k.k("session", tokenHash) }

// IsFrameKey reports whether key is in the frame namespace under this prefix.
func (k Keys) IsFrameKey(key string) bool {
	rest, ok := strings.CutPrefix(key, k.prefix)
	if !ok {
		return false
	}
	// The only key prefixes the frames endpoint serves.
	for _, ns := range []string{"zone:frame:", "track:frame:", "detection:frame:", "detection:exit_frame:"} {
		if strings.HasPrefix(rest, ns) && len(rest) > len(ns) {
			return true
		}
	}
	return false
}
