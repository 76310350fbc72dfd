// Package config loads the service configuration: the defaults compiled in
// from configs/poi.yaml, an optional YAML file on top, then POI_* environment
// variables, then validation that names the bad field.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"poi/configs"
)

// Config is the whole service configuration. Its yaml tags are the keys of
// configs/poi.yaml and, upper-cased and joined by "_", the POI_* variables.
type Config struct {
	DataDir         string        `yaml:"data_dir"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Log             Log           `yaml:"log"`
	MetricsAddr     string        `yaml:"metrics_addr"`
	// PprofAddr serves Go's CPU, heap and goroutine profiles; empty: off.
	PprofAddr  string     `yaml:"pprof_addr"`
	API        API        `yaml:"api"`
	NATS       NATS       `yaml:"nats"`
	MQTT       MQTT       `yaml:"mqtt"`
	Bridge     Bridge     `yaml:"bridge"`
	Redis      Redis      `yaml:"redis"`
	Face       Face       `yaml:"face"`
	Pipeline   Pipeline   `yaml:"pipeline"`
	Partitions Partitions `yaml:"partitions"`
	Index      Index      `yaml:"index"`
	SceneScape SceneScape `yaml:"scenescape"`
	Auth       Auth       `yaml:"auth"`
	Search     Search     `yaml:"search"`
	Audit      Audit      `yaml:"audit"`
	Erasure    Erasure    `yaml:"erasure"`
	Outbox     Outbox     `yaml:"outbox"`
	Review     Review     `yaml:"review"`
	// Cameras are the accepted camera ids and how long their state lasts.
	Cameras Cameras `yaml:"cameras"`
}

// Cameras decides which camera ids the bridge accepts: those listed here,
// those SceneScape lists when it is configured, and, with AllowUnknown, up
// to MaxUnknown others at a time. Every camera id creates state, so ids
// from the network are bounded.
type Cameras struct {
	// List names cameras (GET /cameras when no SceneScape is configured;
	// cameras seen on MQTT are listed too, named by their id).
	List []Camera `yaml:"list"`
	// AllowUnknown accepts ids neither listed nor known to SceneScape.
	AllowUnknown bool `yaml:"allow_unknown"`
	// MaxUnknown bounds the unknown ids tracked at once (per bridge).
	MaxUnknown int `yaml:"max_unknown"`
	// IdleTTL: a camera silent this long is forgotten: an unknown id frees
	// its place, camera:seen drops it, the tracker drops its state from
	// memory.
	IdleTTL time.Duration `yaml:"idle_ttl"`
}

// UnmarshalYAML also accepts the list of cameras alone, the form of this
// key before it became a section ("cameras: [{id: c1}]").
func (c *Cameras) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		return n.Decode(&c.List)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: cameras: want a mapping (list, allow_unknown, max_unknown, idle_ttl) or a list of cameras", n.Line)
	}
	known := map[string]bool{"list": true, "allow_unknown": true, "max_unknown": true, "idle_ttl": true}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !known[k.Value] {
			return fmt.Errorf("line %d: field %s not found in type config.Cameras", k.Line, k.Value)
		}
	}
	type plain Cameras // without this method
	p := plain(*c)
	if err := n.Decode(&p); err != nil {
		return err
	}
	*c = Cameras(p)
	return nil
}

// IDs are the configured camera ids.
func (c Cameras) IDs() []string {
	ids := make([]string, len(c.List))
	for i, cam := range c.List {
		ids[i] = cam.ID
	}
	return ids
}

// Index configures the all-detections index replicas.
type Index struct {
	SegmentDuration time.Duration `yaml:"segment_duration"`
	HNSWMinVectors  int           `yaml:"hnsw_min_vectors"`
	MergeMaxVectors int           `yaml:"merge_max_vectors"`
	HNSWEfSearch    int           `yaml:"hnsw_ef_search"`
	SnapshotEvery   time.Duration `yaml:"snapshot_every"`
}

// Erasure configures the purge of a deleted POI (README, "Erasure").
type Erasure struct {
	// TombstoneTTL is how long an erased POI's tombstone keeps racing
	// writers from recreating its keys, and a repeated DELETE answered 200.
	TombstoneTTL time.Duration `yaml:"tombstone_ttl"`
	// ReplicaWait bounds how long a purge waits for every POI index replica
	// to be handed the deletion (and `poi erase --verify` for their answers).
	ReplicaWait time.Duration `yaml:"replica_wait"`
}

// Review configures alert review and watchlist upkeep (README, "Alert
// review").
type Review struct {
	// NegativeMargin: a later sighting alerts for a POI only if it is
	// closer to the POI's references than to every face dismissed for it
	// by more than this.
	NegativeMargin float64 `yaml:"negative_margin"`
	// MaxPhotos caps the photo references of a POI (enrolment and
	// POST /poi/{id}/images together).
	MaxPhotos int `yaml:"max_photos"`
	// MaxLearned caps the references a POI learns from confirmed alerts.
	MaxLearned int `yaml:"max_learned"`
	// ExpiryAction is what happens to a POI past its expires_at:
	// "deactivate" or "erase".
	ExpiryAction string `yaml:"expiry_action"`
	// ExpiryInterval is how often the expiry loop looks.
	ExpiryInterval time.Duration `yaml:"expiry_interval"`
	// NearThreshold is the band above face.match_threshold in which a
	// camera's dismissed alerts are flagged as clustering.
	NearThreshold float64 `yaml:"near_threshold"`
}

// Outbox configures the relay of enrolments and unfinished purges.
type Outbox struct {
	// RelayInterval is how often pending enrolment events are published
	// again and unfinished purges resumed (also once at start).
	RelayInterval time.Duration `yaml:"relay_interval"`
}

// SceneScape configures its REST API, the source of the camera list.
type SceneScape struct {
	URL      string        `yaml:"url"`
	Token    string        `yaml:"token"`
	Username string        `yaml:"username"`
	Password string        `yaml:"password"`
	Timeout  time.Duration `yaml:"timeout"`
}

// Camera is a configured camera.
type Camera struct {
	ID   string `yaml:"id" json:"id"`
	Name string `yaml:"name" json:"name"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Logger returns the slog logger this configuration describes, writing to w.
func (c Log) Logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level)) // validated by Load
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// API configures the REST server.
type API struct {
	Addr          string `yaml:"addr"`
	MaxImageBytes int64  `yaml:"max_image_bytes"`
	// MaxJPEGScans bounds the scans (SOS markers) of any JPEG decoded,
	// uploaded or from a camera: each scan of a progressive JPEG is a pass
	// over the whole image.
	MaxJPEGScans      int           `yaml:"max_jpeg_scans"`
	MaxImages         int           `yaml:"max_images"`
	RequestTimeout    time.Duration `yaml:"request_timeout"`
	DependencyTimeout time.Duration `yaml:"dependency_timeout"`
	// CORSOrigins are the browser origins allowed to call the API from
	// another site; empty: none (no CORS headers at all).
	CORSOrigins []string  `yaml:"cors_origins"`
	RateLimit   RateLimit `yaml:"rate_limit"`
}

// RateLimit bounds the costly requests (enrolments, searches) of each key:
// a token bucket of Burst requests refilled at Rate a second, per process.
type RateLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// Auth configures access control of the API.
type Auth struct {
	// Enabled is true unless switched off explicitly; off, every caller is
	// an anonymous admin and each start logs a warning.
	Enabled bool `yaml:"enabled"`
	// SessionTTL is how long a browser session lasts after its login.
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// Search configures the search endpoint's rules.
type Search struct {
	// RequireReason makes a reason (a case number) mandatory for stage-2
	// searches over every face seen.
	RequireReason bool `yaml:"require_reason"`
}

// Audit configures the audit trail.
type Audit struct {
	// Retention is how long audit records are kept.
	Retention time.Duration `yaml:"retention"`
}

// NATS configures the message bus: an external URL, or an embedded server.
type NATS struct {
	URL            string        `yaml:"url"`
	EmbeddedHost   string        `yaml:"embedded_host"`
	EmbeddedPort   int           `yaml:"embedded_port"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// DeclareTimeout bounds the declaration of every stream and consumer
	// at start, retries included.
	DeclareTimeout time.Duration `yaml:"declare_timeout"`
	// Credentials of an external server: a username and password, a
	// .creds file (user JWT and nkey seed), or an nkey seed file.
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
	CredsFile string `yaml:"creds_file"`
	NKeyFile  string `yaml:"nkey_file"`
	TLS       TLS    `yaml:"tls"`
	// Replicas is every stream's replica count: 1 for a single server,
	// 3 (or 5) for a JetStream cluster, where a stream then survives the
	// loss of a minority of its servers.
	Replicas int `yaml:"replicas"`
}

// TLS configures a client's TLS: the CA to trust instead of the system's,
// and a client certificate for brokers that ask for one.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any server certificate; for a lab only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Enabled reports whether any TLS setting is made.
func (t TLS) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

// Config builds the tls.Config, or nil when nothing is set (Go's defaults
// then apply to tls:// and ssl:// URLs).
func (t TLS) Config() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // off by default, named for what it does
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Embedded reports whether the process must start its own nats-server.
func (n NATS) Embedded() bool { return n.URL == "" }

// ClientURL is where a client of this deployment's NATS connects: the
// external URL, or the embedded server of a running `poi run`.
func (n NATS) ClientURL() string {
	if n.Embedded() {
		return "nats://" + net.JoinHostPort(n.EmbeddedHost, strconv.Itoa(n.EmbeddedPort))
	}
	return n.URL
}

// MQTT configures the camera-side broker: an external URL, or an embedded one.
type MQTT struct {
	URL            string        `yaml:"url"`
	EmbeddedAddr   string        `yaml:"embedded_addr"`
	ClientID       string        `yaml:"client_id"`
	Username       string        `yaml:"username"`
	Password       string        `yaml:"password"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	TLS            TLS           `yaml:"tls"`
	// EmbeddedMaxInflight bounds the QoS 1 messages the embedded broker
	// keeps per client unacknowledged, e.g. while the bridge holds its
	// acknowledgements during a JetStream outage; beyond it the broker
	// drops them (poi_mqtt_broker_dropped_total).
	EmbeddedMaxInflight int `yaml:"embedded_max_inflight"`
	// Accounts are the clients the embedded broker lets in; required when
	// it listens beyond loopback. The service's own client logs in as
	// username/password above, which must be one of them.
	Accounts []MQTTAccount `yaml:"accounts"`
}

// MQTTAccount is a client of the embedded broker. A camera account may
// publish its cameras' input topics only; Topics are filters an account may
// publish and subscribe to ("#" for the service itself).
type MQTTAccount struct {
	Username     string   `yaml:"username" json:"username"`
	Password     string   `yaml:"password" json:"password"`
	PasswordHash string   `yaml:"password_hash" json:"password_hash"`
	Cameras      []string `yaml:"cameras" json:"cameras"`
	Topics       []string `yaml:"topics" json:"topics"`
}

// Embedded reports whether the process must start its own MQTT broker.
func (m MQTT) Embedded() bool { return m.URL == "" }

// BridgeClientID is the client id of the bridge's persistent MQTT session:
// client_id, or poi-bridge-<hostname>, which stays the same across restarts
// of a host's bridge (two bridges on one host must set client_id apart).
func (m MQTT) BridgeClientID() string {
	if m.ClientID != "" {
		return m.ClientID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "poi-bridge-" + host
}

// BrokerURL is the URL the MQTT client connects to.
func (m MQTT) BrokerURL() string {
	if m.Embedded() {
		return "tcp://" + m.EmbeddedAddr
	}
	return m.URL
}

// Bridge configures the MQTT → JetStream bridge (README, "Delivery
// guarantees").
type Bridge struct {
	// QueueSize bounds the MQTT messages received and not yet acknowledged;
	// a QoS 1 message beyond it stays unacknowledged until the queue has
	// drained and the session is resumed.
	QueueSize int `yaml:"queue_size"`
	// PublishTimeout is how long an asynchronous JetStream publish waits
	// for its ack before it is redone.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
}

// Redis configures the authoritative state store.
type Redis struct {
	URL       string `yaml:"url"`
	KeyPrefix string `yaml:"key_prefix"`
	// SentinelAddrs (host:port) switch the client to Redis Sentinel: it
	// asks them for the primary of SentinelMaster and follows a failover.
	// The database, user and password still come from URL.
	SentinelAddrs  []string `yaml:"sentinel_addrs"`
	SentinelMaster string   `yaml:"sentinel_master"`
	// WaitReplicas > 0 makes the writes that must survive a failover (the
	// tracker's commit, alert claims, enrolments) wait until that many
	// replicas acknowledged them, for up to WaitTimeout.
	WaitReplicas int           `yaml:"wait_replicas"`
	WaitTimeout  time.Duration `yaml:"wait_timeout"`
}

// Sentinel reports whether Redis is reached through Sentinel.
func (r Redis) Sentinel() bool { return len(r.SentinelAddrs) > 0 }

// Face configures the face engine and the similarity thresholds.
type Face struct {
	ModelDir        string  `yaml:"model_dir"`
	ORTLibrary      string  `yaml:"ort_library"`
	IntraOpThreads  int     `yaml:"intra_op_threads"`
	DetectThreshold float64 `yaml:"detect_threshold"`
	NMSIoU          float64 `yaml:"nms_iou"`
	MinFacePx       int     `yaml:"min_face_px"`
	MatchThreshold  float64 `yaml:"match_threshold"`
	SearchThreshold float64 `yaml:"search_threshold"`
	// RequestTimeout bounds one request to the detection or embedding
	// service, queueing behind others included.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// ResendAfter is how long a request goes unanswered before it is sent
	// again, within RequestTimeout: core NATS loses a request or its reply
	// routed through a server that dies.
	ResendAfter time.Duration `yaml:"resend_after"`
}

// Pipeline configures tracking, sampling, alerting and retention.
type Pipeline struct {
	MaxSamplesPerTrack int           `yaml:"max_samples_per_track"`
	SampleInterval     time.Duration `yaml:"sample_interval"`
	TrackSilence       time.Duration `yaml:"track_silence"`
	AlertCooldown      time.Duration `yaml:"alert_cooldown"`
	Retention          time.Duration `yaml:"retention"`
	// UnmatchedRetention is how long what is kept about tracks that never
	// matched a POI lasts (samples, vectors, track records, frames): a
	// site can forget strangers in hours and keep POI appearances for the
	// whole Retention. 0: equal to Retention.
	UnmatchedRetention time.Duration `yaml:"unmatched_retention"`
	MaxDeliver         int           `yaml:"max_deliver"`
	// AlertConcurrency bounds the sightings a process checks at once.
	AlertConcurrency int `yaml:"alert_concurrency"`
	// MaxClockSkew bounds how far a camera message's timestamp may be from
	// the bridge's clock; further is rejected and counted.
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
	// FramesConcurrency bounds the camera images a process stores at once.
	FramesConcurrency int `yaml:"frames_concurrency"`
	// RetryFor bounds how long a stage retries a failing message in place
	// before giving it back to JetStream.
	RetryFor time.Duration `yaml:"retry_for"`
	// FetchWait bounds how long one pull of a stage (alerts, zones,
	// frames) waits for messages; a stopping process stops within it.
	FetchWait time.Duration `yaml:"fetch_wait"`
	// Tracker tunes how faces are linked into tracks.
	Tracker Tracker `yaml:"tracker"`
}

// Unmatched is the effective retention of unmatched tracks' data.
func (p Pipeline) Unmatched() time.Duration {
	if p.UnmatchedRetention == 0 {
		return p.Retention
	}
	return p.UnmatchedRetention
}

// Tracker tunes the tracking stage's linking and sampling.
type Tracker struct {
	// MinIoU links a face to the track whose last box overlaps it by at
	// least this much.
	MinIoU float64 `yaml:"min_iou"`
	// BetterView: a face this many times larger than when its track was
	// last embedded is embedded again.
	BetterView float64 `yaml:"better_view"`
	// LastFrameEvery bounds how often a track's last-seen frame is rewritten.
	LastFrameEvery time.Duration `yaml:"last_frame_every"`
}

// Partitions configures how cameras are spread over the tracker processes.
type Partitions struct {
	// Count is how many partitions cameras are hashed into (changing it
	// re-maps cameras: drain the ingest stream first).
	Count int `yaml:"count"`
	// Batch bounds the messages a partition's owner takes at once.
	Batch int `yaml:"batch"`
	// FetchWait bounds how long one fetch waits for messages.
	FetchWait time.Duration `yaml:"fetch_wait"`
	// AckWait is how long a message delivered to an owner that died waits
	// before it is redelivered to the next owner.
	AckWait time.Duration `yaml:"ack_wait"`
	// PinnedTTL is how long a partition stays with an owner that stopped
	// pulling; it must exceed ack_wait + fetch_wait to keep the order.
	PinnedTTL time.Duration `yaml:"pinned_ttl"`
	// MemberTTL is how long a process that stopped announcing itself stays
	// in the group; Heartbeat how often processes announce themselves.
	MemberTTL time.Duration `yaml:"member_ttl"`
	Heartbeat time.Duration `yaml:"heartbeat"`
	// DetectConcurrency bounds a partition's detection requests in flight.
	DetectConcurrency int `yaml:"detect_concurrency"`
}

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "POI_"

// Load builds the configuration from the compiled-in defaults, the YAML file
// at path (if path is not empty) and the environment (as os.Environ gives it),
// and validates the result.
func Load(path string, environ []string) (Config, error) {
	var c Config
	if err := decodeStrict(bytes.NewReader(configs.DefaultYAML), &c); err != nil {
		return Config{}, fmt.Errorf("config: compiled-in defaults: %w", err)
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		defer f.Close()
		if err := decodeStrict(f, &c); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// decodeStrict decodes YAML rejecting keys the Config does not know: a typo in
// a key must not silently leave the default in place.
func decodeStrict(r io.Reader, c *Config) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nameFields(data, err)
	}
	return nil
}

// nameFields rewrites yaml's "line N: ..." messages to name the key path at
// that line, because an operator thinks in keys, not lines.
func nameFields(data []byte, err error) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	paths := map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind == yaml.DocumentNode {
			for _, c := range n.Content {
				walk(c, prefix)
			}
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			paths[k.Line] = p
			walk(n.Content[i+1], p)
		}
	}
	walk(&root, "")
	lineRE := regexp.MustCompile(`line (\d+): `)
	msg := lineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		line, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
		if p, ok := paths[line]; ok {
			return m + p + ": "
		}
		return m
	})
	return errors.New(msg)
}

// applyEnv sets every field whose POI_* variable is present. Variables with
// the prefix that name no field are errors for the same reason unknown YAML
// keys are, except the few set-up variables listed in ignoredEnv.
func applyEnv(c *Config, environ []string) error {
	fields := map[string]reflect.Value{}
	collectFields(reflect.ValueOf(c).Elem(), nil, fields)
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
		if key == "cameras" {
			key = "cameras_list" // the name of the list before cameras became a section
		}
		f, known := fields[key]
		if !known {
			if ignoredEnv(name) {
				continue
			}
			return fmt.Errorf("%s: no such setting", name)
		}
		if err := setField(f, val); err != nil {
			return fmt.Errorf("%s=%q: %w", name, val, err)
		}
	}
	return nil
}

// ignoredEnv are POI_* variables read by the scripts, benchmarks and tests,
// not by Load.
func ignoredEnv(name string) bool {
	switch name {
	case "POI_ASSETS_DIR", "POI_CONFIG", "POI_FUZZTIME", "POI_TEST_VERBOSE", "POI_REDIS_PORT":
		return true
	}
	return strings.HasPrefix(name, "POI_BENCH_")
}

func collectFields(v reflect.Value, path []string, out map[string]reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		p := append(append([]string(nil), path...), tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			collectFields(fv, p, out)
			continue
		}
		out[strings.Join(p, "_")] = fv
	}
}

func setField(f reflect.Value, s string) error {
	if f.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.Slice:
		// Lists are given as JSON: POI_CAMERAS='[{"id":"c1","name":"Door"}]'.
		p := reflect.New(f.Type())
		if err := json.Unmarshal([]byte(s), p.Interface()); err != nil {
			return fmt.Errorf("want a JSON list: %w", err)
		}
		f.Set(p.Elem())
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		f.SetFloat(x)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.SetBool(b)
	default:
		return fmt.Errorf("unsupported kind %s", f.Kind())
	}
	return nil
}

// Validate checks every field and names the first bad one by its YAML path.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive, got %s", c.ShutdownTimeout)
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "text", "json") {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	checkHostPort(bad, "api.addr", c.API.Addr)
	if c.MetricsAddr != "" {
		checkHostPort(bad, "metrics_addr", c.MetricsAddr)
	}
	if c.PprofAddr != "" {
		checkHostPort(bad, "pprof_addr", c.PprofAddr)
	}
	if c.API.MaxImageBytes < 1024 {
		bad("api.max_image_bytes", "must be at least 1024, got %d", c.API.MaxImageBytes)
	}
	if c.API.MaxJPEGScans < 1 {
		bad("api.max_jpeg_scans", "must be at least 1, got %d", c.API.MaxJPEGScans)
	}
	if c.Review.NegativeMargin < -1 || c.Review.NegativeMargin > 1 {
		bad("review.negative_margin", "must be in -1..1, got %g", c.Review.NegativeMargin)
	}
	if c.Review.MaxPhotos < 1 || c.Review.MaxPhotos > 50 {
		bad("review.max_photos", "must be in 1..50, got %d", c.Review.MaxPhotos)
	}
	if c.Review.MaxLearned < 0 || c.Review.MaxLearned > 50 {
		bad("review.max_learned", "must be in 0..50, got %d", c.Review.MaxLearned)
	}
	if !oneOf(c.Review.ExpiryAction, "deactivate", "erase") {
		bad("review.expiry_action", "must be deactivate or erase, got %q", c.Review.ExpiryAction)
	}
	if c.Review.NearThreshold < 0 || c.Review.NearThreshold > 1 {
		bad("review.near_threshold", "must be in 0..1, got %g", c.Review.NearThreshold)
	}
	if c.API.MaxImages < 1 || c.API.MaxImages > 20 {
		bad("api.max_images", "must be in 1..20, got %d", c.API.MaxImages)
	}
	if c.API.RequestTimeout <= 0 {
		bad("api.request_timeout", "must be positive")
	}
	if c.API.DependencyTimeout <= 0 {
		bad("api.dependency_timeout", "must be positive")
	}
	for i, o := range c.API.CORSOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || o != strings.TrimRight(o, "/") {
			bad(fmt.Sprintf("api.cors_origins[%d]", i), "must be an origin like https://console.example.com, got %q", o)
		}
	}
	if c.API.RateLimit.Rate <= 0 {
		bad("api.rate_limit.rate", "must be positive (requests a second), got %g", c.API.RateLimit.Rate)
	}
	if c.API.RateLimit.Burst < 1 {
		bad("api.rate_limit.burst", "must be at least 1, got %d", c.API.RateLimit.Burst)
	}
	if c.Auth.SessionTTL < time.Minute {
		bad("auth.session_ttl", "must be at least 1m, got %s", c.Auth.SessionTTL)
	}
	if c.Audit.Retention < time.Hour {
		bad("audit.retention", "must be at least 1h, got %s", c.Audit.Retention)
	}
	if c.NATS.Embedded() {
		if c.NATS.EmbeddedPort < 0 || c.NATS.EmbeddedPort > 65535 {
			bad("nats.embedded_port", "must be in 0..65535 (0: any free port), got %d", c.NATS.EmbeddedPort)
		}
	} else {
		for _, u := range strings.Split(c.NATS.URL, ",") {
			checkURL(bad, "nats.url", u, "nats", "tls", "ws", "wss")
		}
	}
	if c.NATS.ConnectTimeout <= 0 {
		bad("nats.connect_timeout", "must be positive")
	}
	if c.NATS.DeclareTimeout <= 0 {
		bad("nats.declare_timeout", "must be positive")
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		bad("nats.replicas", "must be in 1..5 (JetStream's limit), got %d", c.NATS.Replicas)
	} else if c.NATS.Embedded() && c.NATS.Replicas != 1 {
		bad("nats.replicas", "must be 1 with the embedded server (one node), got %d", c.NATS.Replicas)
	}
	if c.MQTT.Embedded() {
		checkHostPort(bad, "mqtt.embedded_addr", c.MQTT.EmbeddedAddr)
		if len(c.MQTT.Accounts) == 0 && !IsLoopback(c.MQTT.EmbeddedAddr) {
			bad("mqtt.accounts", "required when mqtt.embedded_addr (%s) listens beyond loopback", c.MQTT.EmbeddedAddr)
		}
		if len(c.MQTT.Accounts) > 0 && !slices.ContainsFunc(c.MQTT.Accounts, func(a MQTTAccount) bool { return a.Username == c.MQTT.Username }) {
			bad("mqtt.username", "must name one of mqtt.accounts (the service's own login to the embedded broker), got %q", c.MQTT.Username)
		}
		if c.MQTT.EmbeddedMaxInflight < 1 || c.MQTT.EmbeddedMaxInflight > 65535 {
			bad("mqtt.embedded_max_inflight", "must be in 1..65535, got %d", c.MQTT.EmbeddedMaxInflight)
		}
	} else {
		checkURL(bad, "mqtt.url", c.MQTT.URL, "tcp", "mqtt", "ssl", "tls", "ws", "wss")
	}
	if c.MQTT.ConnectTimeout <= 0 {
		bad("mqtt.connect_timeout", "must be positive")
	}
	for i, a := range c.MQTT.Accounts {
		f := fmt.Sprintf("mqtt.accounts[%d]", i)
		if a.Username == "" {
			bad(f+".username", "must not be empty")
		}
		if (a.Password == "") == (a.PasswordHash == "") {
			bad(f, "needs exactly one of password and password_hash")
		}
		if len(a.Cameras) == 0 && len(a.Topics) == 0 {
			bad(f, "allows no topic: list cameras or topics")
		}
		for _, cam := range a.Cameras {
			if cam == "" || strings.ContainsAny(cam, "/+#") {
				bad(f+".cameras", "camera id %q must be one MQTT topic level (no /, + or #)", cam)
			}
		}
	}
	checkTLS(bad, "mqtt.tls", c.MQTT.TLS)
	checkTLS(bad, "nats.tls", c.NATS.TLS)
	if c.NATS.CredsFile != "" && c.NATS.NKeyFile != "" {
		bad("nats.creds_file", "set creds_file or nkey_file, not both")
	}
	if (c.NATS.CredsFile != "" || c.NATS.NKeyFile != "") && c.NATS.Username != "" {
		bad("nats.username", "set a username/password or creds_file/nkey_file, not both")
	}
	for _, f := range []struct{ name, path string }{{"nats.creds_file", c.NATS.CredsFile}, {"nats.nkey_file", c.NATS.NKeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				bad(f.name, "%v", err)
			}
		}
	}
	if c.Bridge.QueueSize < 1 {
		bad("bridge.queue_size", "must be at least 1, got %d", c.Bridge.QueueSize)
	}
	if c.Bridge.PublishTimeout <= 0 {
		bad("bridge.publish_timeout", "must be positive, got %s", c.Bridge.PublishTimeout)
	}
	checkURL(bad, "redis.url", c.Redis.URL, "redis", "rediss", "unix")
	for i, a := range c.Redis.SentinelAddrs {
		checkHostPort(bad, fmt.Sprintf("redis.sentinel_addrs[%d]", i), a)
	}
	if c.Redis.Sentinel() && c.Redis.SentinelMaster == "" {
		bad("redis.sentinel_master", "must name the monitored primary when redis.sentinel_addrs is set")
	}
	if c.Redis.WaitReplicas < 0 {
		bad("redis.wait_replicas", "must be at least 0, got %d", c.Redis.WaitReplicas)
	}
	if c.Redis.WaitTimeout <= 0 {
		bad("redis.wait_timeout", "must be positive, got %s", c.Redis.WaitTimeout)
	}
	if c.Face.IntraOpThreads < 1 {
		bad("face.intra_op_threads", "must be at least 1, got %d", c.Face.IntraOpThreads)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"face.detect_threshold", c.Face.DetectThreshold},
		{"face.nms_iou", c.Face.NMSIoU},
		{"face.match_threshold", c.Face.MatchThreshold},
		{"face.search_threshold", c.Face.SearchThreshold},
	} {
		if p.v <= 0 || p.v >= 1 {
			bad(p.name, "must be in (0, 1), got %g", p.v)
		}
	}
	if c.Face.MinFacePx < 1 {
		bad("face.min_face_px", "must be at least 1, got %d", c.Face.MinFacePx)
	}
	if c.Pipeline.AlertConcurrency < 1 {
		bad("pipeline.alert_concurrency", "must be at least 1, got %d", c.Pipeline.AlertConcurrency)
	}
	pt := c.Partitions
	if pt.Count < 1 || pt.Count > 1024 {
		bad("partitions.count", "must be 1..1024, got %d", pt.Count)
	}
	if pt.Batch < 1 {
		bad("partitions.batch", "must be at least 1, got %d", pt.Batch)
	}
	if pt.DetectConcurrency < 1 {
		bad("partitions.detect_concurrency", "must be at least 1, got %d", pt.DetectConcurrency)
	}
	if pt.FetchWait <= 0 || pt.AckWait <= 0 || pt.MemberTTL <= 0 || pt.Heartbeat <= 0 || pt.Heartbeat >= pt.MemberTTL {
		bad("partitions", "fetch_wait, ack_wait, member_ttl and heartbeat must be positive, heartbeat below member_ttl")
	}
	if pt.PinnedTTL <= pt.AckWait+pt.FetchWait {
		bad("partitions.pinned_ttl", "must exceed ack_wait + fetch_wait (%s), got %s: the order of a camera's messages across owners depends on it", pt.AckWait+pt.FetchWait, pt.PinnedTTL)
	}
	if c.Pipeline.MaxSamplesPerTrack < 1 {
		bad("pipeline.max_samples_per_track", "must be at least 1, got %d", c.Pipeline.MaxSamplesPerTrack)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"pipeline.sample_interval", c.Pipeline.SampleInterval},
		{"pipeline.track_silence", c.Pipeline.TrackSilence},
		{"pipeline.alert_cooldown", c.Pipeline.AlertCooldown},
		{"pipeline.retention", c.Pipeline.Retention},
		{"pipeline.max_clock_skew", c.Pipeline.MaxClockSkew},
		{"erasure.tombstone_ttl", c.Erasure.TombstoneTTL},
		{"erasure.replica_wait", c.Erasure.ReplicaWait},
		{"outbox.relay_interval", c.Outbox.RelayInterval},
		{"pipeline.retry_for", c.Pipeline.RetryFor},
		{"pipeline.fetch_wait", c.Pipeline.FetchWait},
		{"pipeline.tracker.last_frame_every", c.Pipeline.Tracker.LastFrameEvery},
		{"face.request_timeout", c.Face.RequestTimeout},
		{"face.resend_after", c.Face.ResendAfter},
		{"review.expiry_interval", c.Review.ExpiryInterval},
	} {
		if d.v <= 0 {
			bad(d.name, "must be positive, got %s", d.v)
		}
	}
	if c.Face.ResendAfter > c.Face.RequestTimeout {
		bad("face.resend_after", "must not exceed face.request_timeout (%s), got %s", c.Face.RequestTimeout, c.Face.ResendAfter)
	}
	if c.Index.SegmentDuration < time.Minute {
		bad("index.segment_duration", "must be at least 1m, got %s", c.Index.SegmentDuration)
	}
	if c.Index.SnapshotEvery < time.Second {
		bad("index.snapshot_every", "must be at least 1s, got %s", c.Index.SnapshotEvery)
	}
	if c.SceneScape.URL != "" {
		checkURL(bad, "scenescape.url", c.SceneScape.URL, "http", "https")
	}
	if c.SceneScape.Timeout <= 0 {
		bad("scenescape.timeout", "must be positive")
	}
	for i, cam := range c.Cameras.List {
		if cam.ID == "" {
			bad(fmt.Sprintf("cameras.list[%d].id", i), "must not be empty")
		}
	}
	if c.Cameras.MaxUnknown < 1 {
		bad("cameras.max_unknown", "must be at least 1, got %d", c.Cameras.MaxUnknown)
	}
	if c.Cameras.IdleTTL < time.Minute {
		bad("cameras.idle_ttl", "must be at least 1m, got %s", c.Cameras.IdleTTL)
	}
	if u := c.Pipeline.UnmatchedRetention; u < 0 || u > c.Pipeline.Retention || (u > 0 && u < time.Minute) {
		bad("pipeline.unmatched_retention", "must be 0 (equal to pipeline.retention) or 1m..pipeline.retention (%s), got %s", c.Pipeline.Retention, u)
	}
	if c.Pipeline.MaxDeliver < 1 {
		bad("pipeline.max_deliver", "must be at least 1, got %d", c.Pipeline.MaxDeliver)
	}
	if c.Pipeline.FramesConcurrency < 1 {
		bad("pipeline.frames_concurrency", "must be at least 1, got %d", c.Pipeline.FramesConcurrency)
	}
	if tr := c.Pipeline.Tracker; tr.MinIoU <= 0 || tr.MinIoU > 1 {
		bad("pipeline.tracker.min_iou", "must be in (0, 1], got %g", tr.MinIoU)
	}
	if tr := c.Pipeline.Tracker; tr.BetterView <= 1 {
		bad("pipeline.tracker.better_view", "must exceed 1 (a larger view), got %g", tr.BetterView)
	}
	return errors.Join(errs...)
}

func checkTLS(bad func(string, string, ...any), field string, t TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad(field, "cert_file and key_file go together")
		return
	}
	if _, err := t.Config(); err != nil {
		bad(field, "%v", err)
	}
}

// IsLoopback reports whether a host:port listens on this host only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RedactURL returns raw fit for a log line or an error message: the
// password of each URL (a comma-separated list too) is replaced, and so is
// a user part with no password, which NATS reads as a token. A string that
// does not parse as a URL is replaced whole, since where its secret sits
// is unknown.
func RedactURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "[unparsable URL redacted]"
			continue
		}
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = url.User("xxxxx")
			}
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}

func checkHostPort(bad func(string, string, ...any), field, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		bad(field, "must be host:port, got %q", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad(field, "port must be in 0..65535, got %q", port)
	}
}

func checkURL(bad func(string, string, ...any), field, raw string, schemes ...string) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		bad(field, "not a URL: %v", err)
		return
	}
	if !oneOf(u.Scheme, schemes...) {
		bad(field, "scheme must be one of %s, got %q", strings.Join(schemes, ", "), RedactURL(raw))
		return
	}
	if u.Port() != "" {
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			bad(field, "port must be in 1..65535, got %q", u.Port())
		}
	}
}
