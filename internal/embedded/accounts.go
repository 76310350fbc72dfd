package embedded

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Account is a client allowed into the embedded broker.
type Account struct {
	Username string
	// Password, or PasswordHash (HashPassword's format) to keep the
	// password itself out of the configuration.
	Password     string
	PasswordHash string
	// Cameras may publish their own input topics only (frames, SceneScape
	// data and images of that camera id), and subscribe to nothing.
	Cameras []string
	// Topics are MQTT filters the account may publish and subscribe to:
	// "#" for the service itself, "scenescape/#" for a SceneScape bridge.
	Topics []string
}

// CameraTopics are the topics a camera account may publish to: the bridge's
// ingest topics (bridge.Topics) with the camera's id.
func CameraTopics(camera string) []string {
	return []string{"poi/frames/" + camera, "scenescape/data/camera/" + camera, "scenescape/image/camera/" + camera}
}

const hashScheme = "pbkdf2-sha256"

// HashPassword returns a PasswordHash for password:
// pbkdf2-sha256$ITERATIONS$SALT$KEY (salt and key base64, unpadded).
func HashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	// Below OWASP's 600,000 for PBKDF2-HMAC-SHA256: each camera login pays it
	// on the broker, and a camera password is a generated secret, not a
	// human one.
	const iter = 100_000
	key, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, iter, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// verifier checks one account's password.
type verifier struct {
	plain []byte
	iter  int
	salt  []byte
	key   []byte
}

func newVerifier(a Account) (verifier, error) {
	if a.PasswordHash == "" {
		if a.Password == "" {
			return verifier{}, errors.New("no password or password_hash")
		}
		return verifier{plain: []byte(a.Password)}, nil
	}
	parts := strings.Split(a.PasswordHash, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return verifier{}, fmt.Errorf("password_hash must be %s$ITERATIONS$SALT$KEY", hashScheme)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 {
		return verifier{}, fmt.Errorf("password_hash: bad iteration count %q", parts[1])
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	key, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(key) == 0 {
		return verifier{}, errors.New("password_hash: salt and key must be unpadded base64")
	}
	return verifier{iter: iter, salt: salt, key: key}, nil
}

func (v verifier) ok(password []byte) bool {
	if v.plain != nil {
		return subtle.ConstantTimeCompare(v.plain, password) == 1
	}
	key, err := pbkdf2.Key(sha256.New, string(password), v.salt, v.iter, len(v.key))
	return err == nil && subtle.ConstantTimeCompare(key, v.key) == 1
}

// accountsHook authenticates clients against the accounts and restricts
// each to its topics.
type accountsHook struct {
	mqtt.HookBase
	accounts map[string]account
}

type account struct {
	v       verifier
	publish map[string]bool // exact topics (its cameras')
	filters []string
}

func newAccountsHook(accounts []Account) (*accountsHook, error) {
	h := &accountsHook{accounts: map[string]account{}}
	for i, a := range accounts {
		if a.Username == "" {
			return nil, fmt.Errorf("accounts[%d]: empty username", i)
		}
		if _, dup := h.accounts[a.Username]; dup {
			return nil, fmt.Errorf("accounts[%d]: username %q listed twice", i, a.Username)
		}
		v, err := newVerifier(a)
		if err != nil {
			return nil, fmt.Errorf("accounts[%d] (%s): %w", i, a.Username, err)
		}
		acc := account{v: v, publish: map[string]bool{}, filters: a.Topics}
		for _, c := range a.Cameras {
			if c == "" || strings.ContainsAny(c, "/+#") {
				return nil, fmt.Errorf("accounts[%d] (%s): camera id %q must be one topic level", i, a.Username, c)
			}
			for _, t := range CameraTopics(c) {
				acc.publish[t] = true
			}
		}
		h.accounts[a.Username] = acc
	}
	return h, nil
}

// ID names the hook in mochi's logs.
func (h *accountsHook) ID() string { return "poi-accounts" }

// Provides lists the events the hook decides.
func (h *accountsHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// OnConnectAuthenticate admits a client only with a listed username and
// its password.
func (h *accountsHook) OnConnectAuthenticate(_ *mqtt.Client, pk packets.Packet) bool {
	a, ok := h.accounts[string(pk.Connect.Username)]
	return ok && a.v.ok(pk.Connect.Password)
}

// OnACLCheck allows a publish (write) to the account's camera topics and
// filters, and a subscription only to its filters.
func (h *accountsHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	a, ok := h.accounts[string(cl.Properties.Username)]
	if !ok {
		return false
	}
	if write && a.publish[topic] {
		return true
	}
	for _, f := range a.filters {
		if _, m := auth.MatchTopic(f, topic); m {
			return true
		}
	}
	return false
}
