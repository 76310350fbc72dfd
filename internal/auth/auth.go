// Package auth holds what access control is made of: the roles, the API
// keys (how they are made, parsed and checked) and the session tokens. It is
// pure: Redis holds the records (internal/store), the API applies them.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Role is what a key may do. Roles are ordered: each includes the ones
// below it.
type Role int

// The roles, least first. Open marks routes that need no key at all.
const (
	Open Role = iota
	Viewer
	Operator
	Admin
)

// String is the role's name in records, requests and answers.
func (r Role) String() string {
	switch r {
	case Open:
		return "open"
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole reads a key's role; "open" is not a role a key can have.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	case "admin":
		return Admin, nil
	}
	return Open, fmt.Errorf("role %q: want viewer, operator or admin", s)
}

// Allows reports whether a caller of role r may call a route that needs
// role need.
func (r Role) Allows(need Role) bool { return r >= need }

// keyPrefix starts every key, so that secret scanners and people can tell
// one when they see it.
const keyPrefix = "poi_"

// secretBytes is the randomness of a key: 256 bits, well above the 128
// bits the service promises.
const secretBytes = 32

// Key is a newly made API key: its id (public, names the record) and the
// whole secret string, shown to its owner once.
type Key struct {
	ID     string
	Secret string
}

// NewKey makes a random key "poi_{id}_{secret}". The id is part of the key
// so that checking a key is a lookup by id followed by a constant-time
// comparison of hashes, never a search by a secret-derived value.
func NewKey() (Key, error) {
	var id [8]byte
	var sec [secretBytes]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, fmt.Errorf("new key: %w", err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return Key{}, fmt.Errorf("new key: %w", err)
	}
	kid := hex.EncodeToString(id[:])
	return Key{ID: kid, Secret: keyPrefix + kid + "_" + base64.RawURLEncoding.EncodeToString(sec[:])}, nil
}

// ErrMalformed is a presented key that cannot be one of ours.
var ErrMalformed = errors.New("malformed key")

var keyRE = regexp.MustCompile(`^poi_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$`)

// KeyID returns the id inside a presented key.
func KeyID(secret string) (string, error) {
	m := keyRE.FindStringSubmatch(secret)
	if m == nil {
		return "", ErrMalformed
	}
	return m[1], nil
}

// Hash is what the service stores of a key or a token.
//
// A plain SHA-256 suffices here, unlike for passwords: the hashed values are
// 256 random bits, so there is no dictionary to try and a brute force of
// 2^256 is out of reach whatever the hash costs. Slow password hashes
// (bcrypt, argon2) exist to stretch low-entropy secrets; on every request
// they would only cost CPU.
func Hash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Matches compares a presented secret with a stored hash in constant time,
// so the time taken says nothing about how much of the hash matched.
func Matches(secret, storedHash string) bool {
	got := Hash(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(storedHash)) == 1
}

// NewToken is a random opaque token (sessions, CSRF): 256 bits, base64url.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Record is a key as stored: never the key itself, only its hash.
type Record struct {
	ID        string
	Name      string
	Role      Role
	Hash      string
	CreatedAt time.Time
	CreatedBy string
	// ExpiresAt is zero for a key that does not expire.
	ExpiresAt time.Time
	// RevokedAt is zero for a key in force.
	RevokedAt time.Time
}

// Status of a key record at a time.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Status says whether the key is in force at now.
func (r Record) Status(now time.Time) string {
	switch {
	case !r.RevokedAt.IsZero():
		return StatusRevoked
	case !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt):
		return StatusExpired
	}
	return StatusActive
}

// Check reasons: why a presented key was refused.
const (
	ReasonMissing   = "no credentials"
	ReasonMalformed = "malformed key"
	ReasonUnknown   = "unknown key"
	ReasonMismatch  = "wrong key"
	ReasonRevoked   = "revoked key"
	ReasonExpired   = "expired key"
	ReasonSession   = "unknown or expired session"
	ReasonCSRF      = "missing or wrong CSRF token"
	ReasonRole      = "role too low"
)

// Check decides whether secret is the key of rec at now; it returns "" or
// the reason for refusing.
func Check(rec Record, secret string, now time.Time) string {
	if !Matches(secret, rec.Hash) {
		return ReasonMismatch
	}
	switch rec.Status(now) {
	case StatusRevoked:
		return ReasonRevoked
	case StatusExpired:
		return ReasonExpired
	}
	return ""
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName checks a key's name: 1 to 64 letters, digits, '.', '_' or '-',
// not starting with punctuation, and never shaped like a key id (so that
// NAME_OR_ID is never ambiguous).
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	if IsKeyID(name) {
		return fmt.Errorf("name %q: looks like a key id", name)
	}
	return nil
}

var idRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// IsKeyID reports whether s has the form of a key id.
func IsKeyID(s string) bool { return idRE.MatchString(s) }

// FromHeaders picks the presented key: "Authorization: Bearer KEY" first,
// then "X-API-Key: KEY". An Authorization header of another scheme is
// ignored here (present but unusable: the caller reports it).
func FromHeaders(authorization, apiKey string) (string, bool) {
	if scheme, v, ok := strings.Cut(strings.TrimSpace(authorization), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if v = strings.TrimSpace(v); v != "" {
			return v, true
		}
	}
	if v := strings.TrimSpace(apiKey); v != "" {
		return v, true
	}
	return "", false
}

// NewRecord makes a key for name and role and the record that stores it;
// the secret is returned to be shown once and then forgotten.
func NewRecord(name string, role Role, expiresAt time.Time, createdBy string, now time.Time) (Record, string, error) {
	if err := ValidName(name); err != nil {
		return Record{}, "", err
	}
	if role == Open {
		return Record{}, "", fmt.Errorf("role: want viewer, operator or admin")
	}
	if !expiresAt.IsZero() && !expiresAt.After(now) {
		return Record{}, "", fmt.Errorf("expires_at %s is not in the future", expiresAt.UTC().Format(time.RFC3339))
	}
	k, err := NewKey()
	if err != nil {
		return Record{}, "", err
	}
	return Record{ID: k.ID, Name: name, Role: role, Hash: Hash(k.Secret), CreatedAt: now.UTC(), CreatedBy: createdBy, ExpiresAt: expiresAt.UTC()}, k.Secret, nil
}
