package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"poi/internal/auth"
)

// ErrNameTaken is a key name already used by a key that is not revoked.
var ErrNameTaken = errors.New("key name taken")

// ErrKeysExist is the bootstrap finding keys already there.
var ErrKeysExist = errors.New("keys exist")

// createKeyLua writes a key record, its place in the list and its name
// atomically. A name is taken while its key is not revoked, unless that key
// has expired; with ARGV[4] = 1 (the bootstrap) it writes only when no key
// exists at all, so two API processes starting together make one admin key.
const createKeyLua = `
local rec, ids, names = KEYS[1], KEYS[2], KEYS[3]
local id, name, created, onlyFirst, now, seen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if onlyFirst == '1' and redis.call('ZCARD', ids) > 0 then return 'exists' end
local holder = redis.call('HGET', names, name)
if holder then
  if holder ~= seen then return 'name' end
  local exp = redis.call('HGET', KEYS[4], 'expires_at')
  if not exp or exp == '' or tonumber(exp) > now then return 'name' end
end
redis.call('HSET', names, name, id)
redis.call('HSET', rec, unpack(ARGV, 7))
redis.call('ZADD', ids, created, id)
return 'ok'
`

// revokeKeyLua marks a key revoked and frees its name.
const revokeKeyLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local name = redis.call('HGET', KEYS[1], 'name')
if name and redis.call('HGET', KEYS[2], name) == ARGV[1] then redis.call('HDEL', KEYS[2], name) end
local at = redis.call('HGET', KEYS[1], 'revoked_at')
if at and at ~= '' then return 'already' end
redis.call('HSET', KEYS[1], 'revoked_at', ARGV[2])
return 'ok'
`

var (
	createKeyScript = redis.NewScript(createKeyLua)
	revokeKeyScript = redis.NewScript(revokeKeyLua)
)

func msString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func parseMS(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// CreateAPIKey stores a key record; ErrNameTaken when its name is in use.
func (s *Store) CreateAPIKey(ctx context.Context, r auth.Record) error {
	return s.createAPIKey(ctx, r, false)
}

// CreateFirstAPIKey stores a key record only when no key exists at all
// (ErrKeysExist otherwise): the bootstrap.
func (s *Store) CreateFirstAPIKey(ctx context.Context, r auth.Record) error {
	return s.createAPIKey(ctx, r, true)
}

func (s *Store) createAPIKey(ctx context.Context, r auth.Record, onlyFirst bool) error {
	k := s.keys
	holder, err := s.rdb.HGet(ctx, k.APIKeyNames(), r.Name).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("create key %s: %w", r.Name, err)
	}
	first := "0"
	if onlyFirst {
		first = "1"
	}
	// The holder's record is passed as a key so the script may read it; the
	// script refuses the name if another key took it in between.
	res, err := createKeyScript.Run(ctx, s.rdb, []string{k.APIKey(r.ID), k.APIKeyIDs(), k.APIKeyNames(), k.APIKey(holder)},
		r.ID, r.Name, r.CreatedAt.UnixMilli(), first, time.Now().UnixMilli(), holder,
		"name", r.Name, "role", r.Role.String(), "hash", r.Hash, "created_at", msString(r.CreatedAt),
		"created_by", r.CreatedBy, "expires_at", msString(r.ExpiresAt), "revoked_at", msString(r.RevokedAt)).Text()
	if err != nil {
		return fmt.Errorf("create key %s: %w", r.Name, err)
	}
	switch res {
	case "exists":
		return ErrKeysExist
	case "name":
		return fmt.Errorf("create key %s: %w", r.Name, ErrNameTaken)
	}
	return nil
}

func recordFrom(id string, m map[string]string) (auth.Record, error) {
	role, err := auth.ParseRole(m["role"])
	if err != nil {
		return auth.Record{}, fmt.Errorf("key %s: %w", id, err)
	}
	return auth.Record{ID: id, Name: m["name"], Role: role, Hash: m["hash"], CreatedAt: parseMS(m["created_at"]),
		CreatedBy: m["created_by"], ExpiresAt: parseMS(m["expires_at"]), RevokedAt: parseMS(m["revoked_at"])}, nil
}

// APIKey reads one key record (ErrNotFound when there is none).
func (s *Store) APIKey(ctx context.Context, id string) (auth.Record, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.APIKey(id)).Result()
	if err != nil {
		return auth.Record{}, fmt.Errorf("key %s: %w", id, err)
	}
	if len(m) == 0 {
		return auth.Record{}, fmt.Errorf("key %s: %w", id, ErrNotFound)
	}
	return recordFrom(id, m)
}

// APIKeys lists every key record, oldest first, revoked ones included.
func (s *Store) APIKeys(ctx context.Context) ([]auth.Record, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.APIKeyIDs(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.keys.APIKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && len(ids) > 0 {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	out := make([]auth.Record, 0, len(ids))
	for i, id := range ids {
		m := cmds[i].Val()
		if len(m) == 0 {
			continue
		}
		r, err := recordFrom(id, m)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ResolveAPIKey finds the id of a key named by its id or by the name of a
// key not revoked (ErrNotFound otherwise).
func (s *Store) ResolveAPIKey(ctx context.Context, nameOrID string) (string, error) {
	if auth.IsKeyID(nameOrID) {
		n, err := s.rdb.Exists(ctx, s.keys.APIKey(nameOrID)).Result()
		if err != nil {
			return "", fmt.Errorf("resolve key %s: %w", nameOrID, err)
		}
		if n == 0 {
			return "", fmt.Errorf("key %s: %w", nameOrID, ErrNotFound)
		}
		return nameOrID, nil
	}
	id, err := s.rdb.HGet(ctx, s.keys.APIKeyNames(), nameOrID).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("key %s: %w", nameOrID, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("resolve key %s: %w", nameOrID, err)
	}
	return id, nil
}

// RevokeAPIKey marks a key revoked at; it reports false when the key was
// revoked already (ErrNotFound when there is no such key).
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) (bool, error) {
	res, err := revokeKeyScript.Run(ctx, s.rdb, []string{s.keys.APIKey(id), s.keys.APIKeyNames()}, id, msString(at)).Text()
	if err != nil {
		return false, fmt.Errorf("revoke key %s: %w", id, err)
	}
	switch res {
	case "missing":
		return false, fmt.Errorf("key %s: %w", id, ErrNotFound)
	case "already":
		return false, nil
	}
	return true, nil
}

// Session is a browser session as stored.
type Session struct {
	KeyID    string
	CSRFHash string
}

// CreateSession stores a session under the hash of its token for ttl.
func (s *Store) CreateSession(ctx context.Context, tokenHash string, sess Session, ttl time.Duration) error {
	k := s.keys.Session(tokenHash)
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, k, "key_id", sess.KeyID, "csrf", sess.CSRFHash, "created_at", msString(time.Now()))
	pipe.PExpire(ctx, k, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// GetSession reads a session (ErrNotFound when it expired or never was).
func (s *Store) GetSession(ctx context.Context, tokenHash string) (Session, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.Session(tokenHash)).Result()
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	if len(m) == 0 || m["key_id"] == "" {
		return Session{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	return Session{KeyID: m["key_id"], CSRFHash: m["csrf"]}, nil
}

// DeleteSession ends a session.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	if err := s.rdb.Del(ctx, s.keys.Session(tokenHash)).Err(); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
