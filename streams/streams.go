// Package streams is the single place that names every JetStream stream,
// subject and durable consumer of the service, and declares them.
//
// Declaring is idempotent: a second start finds the same definitions and
// changes nothing; a changed definition is updated in place and logged, never
// silently ignored.
package streams

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	// Ingest holds everything the bridge accepted from MQTT, already
	// validated. It is a work queue with a bounded backlog: when it is full,
	// publishing fails (DiscardNew) and the bridge withholds the MQTT
	// acknowledgement, so the broker redelivers instead of anyone dropping.
	Ingest = "POI_INGEST"
	// Sightings holds tracked face observations for the alert stage.
	Sightings = "POI_SIGHTINGS"
	// Samples is the log of every vector added to the all-detections index,
	// kept for the retention period: each index replica (API and worker
	// processes) replays it from its snapshot's position.
	Samples = "POI_SAMPLES"
	// Alerts is the public alert stream (a contract with integrators).
	Alerts = "POI_ALERTS"
	// Control carries POI enrolments and deletions to every replica of the
	// POI index.
	Control = "POI_CONTROL"
	// DeadLetter keeps messages that failed MaxDeliver times, for operators.
	DeadLetter = "POI_DLQ"
	// Audit is the audit trail: who did what through the API and the CLI.
	// It is append-only (no message delete, no purge) and keeps records for
	// its own retention.
	Audit = "POI_AUDIT"
)

// Subjects. Camera ids are escaped with Token before they go into a subject.
const (
	// Publishers use .{camera}; the stream stores .{partition}.{camera}
	// (IngestTransform), so a consumer can take one partition's cameras.
	IngestFrame      = "poi.ingest.frame"      // .{camera}: JPEG frame for the full path
	IngestSceneScape = "poi.ingest.scenescape" // .{camera}: SceneScape detections
	IngestImage      = "poi.ingest.image"      // .{camera}: SceneScape camera image
	IngestRegion     = "poi.ingest.region"     // .{scene}.{region}: region events
	SightingsSubj    = "poi.sighting"          // .{camera}
	SamplesSubj      = "poi.sample"            // .{camera}
	AlertsSubj       = "poi.alerts"            // .{severity}.{poi_id} (contract)
	ReviewsSubj      = "poi.reviews"           // .{status}.{poi_id}: alert reviews, on POI_ALERTS (contract)
	ControlSubj      = "poi.control"           // .{enrolled|refs|deleted}.{poi_id} (ControlSubject)
	DeadLetterSubj   = "poi.dlq"               // .{consumer}
	AuditSubj        = "poi.audit"             // .{action}, the action's dotted name as tokens (poi.audit.poi.enroll)
	// EmbedService is the core-NATS request-reply subject of the embedding
	// service (queue group EmbedQueue), used by API processes that do not
	// load models.
	EmbedService = "poi.svc.embed"
	EmbedQueue   = "embed"
	// DetectService is the same service on its own subject and queue group
	// (DetectQueue): the tracker sends it frames to find faces in, so that
	// detection, the costly stateless step, spreads over every worker
	// process that runs the detect pool, whatever partitions they own.
	DetectService = "poi.svc.detect"
	DetectQueue   = "detect"
	// ReplicaQuery is the core-NATS subject every POI index replica
	// answers (no queue group: each one replies) with what it holds for a
	// POI id, so `poi erase --verify` can ask every running process.
	ReplicaQuery = "poi.svc.replica"
)

// ControlSubject is the subject of a control event: one per POI and op, so
// that erasing a POI can purge exactly its messages (ControlPOIFilter).
func ControlSubject(op, poiID string) string { return Subject(ControlSubj, op, poiID) }

// ControlPOIFilter matches every control message of one POI.
func ControlPOIFilter(poiID string) string { return ControlSubj + ".*." + Token(poiID) }

// AlertsPOIFilter matches every alert of one POI on POI_ALERTS, whatever
// its severity.
func AlertsPOIFilter(poiID string) string { return AlertsSubj + ".*." + Token(poiID) }

// ReviewSubject is where the review of an alert of poiID is published.
func ReviewSubject(status, poiID string) string { return Subject(ReviewsSubj, status, poiID) }

// ReviewsPOIFilter matches every review of one POI's alerts on POI_ALERTS.
func ReviewsPOIFilter(poiID string) string { return ReviewsSubj + ".*." + Token(poiID) }

// Members is the key-value bucket where the worker processes of each
// partitioned stage announce themselves (key {stage}.{member}); entries
// expire unless refreshed, so a dead process leaves the group by itself.
const Members = "POI_MEMBERS"

// IngestTransform returns the stream subject transform that inserts the
// camera's partition (nats-server's deterministic hash of the camera token,
// modulo partitions) before the camera token of frames, SceneScape
// detections and camera images. Region events, whose subjects have one token
// more, do not match its source and are stored as published.
func IngestTransform(partitions int) *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{
		Source:      "poi.ingest.*.*",
		Destination: fmt.Sprintf("poi.ingest.{{wildcard(1)}}.{{partition(%d,2)}}.{{wildcard(2)}}", partitions),
	}
}

// Partition is the partition nats-server's IngestTransform gives camera:
// FNV-1a (32 bits) of the escaped camera token, modulo partitions. Tests
// check it against the server; the service itself only reads partitions
// from subjects.
func Partition(camera string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(Token(camera)))
	return int(h.Sum32() % uint32(partitions))
}

// IngestPartitionFilters are the stored subjects of one partition that the
// tracker consumes: frames and SceneScape detections of its cameras.
func IngestPartitionFilters(p int) []string {
	n := strconv.Itoa(p)
	return []string{IngestFrame + "." + n + ".*", IngestSceneScape + "." + n + ".*"}
}

// SplitIngest parses a stored ingest subject {prefix}.{partition}.{camera}.
func SplitIngest(subject string) (kind string, partition int, camera string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != "poi" || parts[1] != "ingest" {
		return "", 0, "", fmt.Errorf("ingest subject %q: want poi.ingest.{kind}.{partition}.{camera}", subject)
	}
	partition, err = strconv.Atoi(parts[3])
	if err != nil {
		return "", 0, "", fmt.Errorf("ingest subject %q: partition: %w", subject, err)
	}
	camera, err = Untoken(parts[4])
	return "poi.ingest." + parts[2], partition, camera, err
}

// Durable consumer names.
const (
	ConsumerFrames = "frames"
	ConsumerZones  = "zones"
	ConsumerAlert  = "alert"
	// ConsumerIndexPrefix names the tracker's consumers, one per partition
	// (IndexConsumer).
	ConsumerIndexPrefix = "index-p"
	// PriorityGroup is the priority group of every partition consumer.
	PriorityGroup = "owner"
)

// IndexConsumer names partition p's tracker consumer.
func IndexConsumer(p int) string { return fmt.Sprintf("%s%02d", ConsumerIndexPrefix, p) }

// Subject joins tokens into a subject, escaping each.
func Subject(prefix string, tokens ...string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, t := range tokens {
		b.WriteByte('.')
		b.WriteString(Token(t))
	}
	return b.String()
}

// Token escapes s into one subject token: every byte outside [A-Za-z0-9_:-]
// (which covers '.', '*', '>', spaces and '%') becomes %XX, so that any camera
// id maps to exactly one token and back. An empty string becomes a lone "%"
// (never produced otherwise) because an empty token is not a valid subject.
func Token(s string) string {
	if s == "" {
		return "%"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// Untoken reverses Token.
func Untoken(t string) (string, error) {
	if t == "%" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '%' {
			b.WriteByte(t[i])
			continue
		}
		if i+2 >= len(t) {
			return "", fmt.Errorf("untoken %q: truncated escape", t)
		}
		var v byte
		for _, h := range []byte{t[i+1], t[i+2]} {
			switch {
			case h >= '0' && h <= '9':
				v = v<<4 | (h - '0')
			case h >= 'A' && h <= 'F':
				v = v<<4 | (h - 'A' + 10)
			default:
				return "", fmt.Errorf("untoken %q: bad escape", t)
			}
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}

// Limits sizes the streams; the defaults suit one site with tens of cameras.
type Limits struct {
	// IngestMaxAge bounds how long unprocessed input waits: frames older
	// than this are useless for live alerts.
	IngestMaxAge   time.Duration
	IngestMaxBytes int64
	// DuplicateWindow is how long a Nats-Msg-Id is remembered: it must
	// exceed the MQTT redelivery horizon (broker retries within seconds).
	DuplicateWindow time.Duration
	AlertsMaxAge    time.Duration
	DLQMaxAge       time.Duration
	// Retention is how long samples stay replayable: the same as the
	// all-detections index keeps them (the unmatched retention).
	Retention time.Duration
	// AuditRetention is how long the audit trail keeps its records.
	AuditRetention time.Duration

	// Partitions is how many partitions cameras are hashed into; each has
	// its own tracker consumer, owned by one worker process at a time.
	Partitions int
	// PartitionAckWait is the tracker consumers' ack wait: how long a
	// message delivered to an owner that died waits to be redelivered.
	PartitionAckWait time.Duration
	// PinnedTTL is how long a partition stays pinned to an owner that stopped
	// pulling. It must exceed PartitionAckWait: by the time another owner
	// is pinned, everything the old one held is due for redelivery, and
	// JetStream redelivers before it delivers anything newer, so a camera's
	// messages keep their order across a change of owner.
	PinnedTTL time.Duration
	// PartitionMaxAckPending bounds a partition's messages in flight.
	PartitionMaxAckPending int
	// MemberTTL is how long a worker that stopped announcing itself stays a
	// member of its stage's group.
	MemberTTL time.Duration
	// Replicas is every stream's (and the members bucket's) replica count:
	// 1 on one server, 3 or 5 on a JetStream cluster. Consumers inherit it.
	Replicas int
}

// DefaultLimits returns the limits used when nothing else is configured.
func DefaultLimits() Limits {
	return Limits{
		IngestMaxAge:    time.Hour,
		IngestMaxBytes:  2 << 30,
		DuplicateWindow: 2 * time.Minute,
		AlertsMaxAge:    7 * 24 * time.Hour,
		DLQMaxAge:       7 * 24 * time.Hour,
		Retention:       7 * 24 * time.Hour,
		AuditRetention:  365 * 24 * time.Hour,

		Partitions:             16,
		PartitionAckWait:       5 * time.Second,
		PinnedTTL:              8 * time.Second,
		PartitionMaxAckPending: 512,
		MemberTTL:              5 * time.Second,
		Replicas:               1,
	}
}

// WithRetention derives every stream's MaxAge from the configured
// retentions: alerts (POI appearances) are kept for retention; what may
// show anyone else is kept for the unmatched retention at most: samples
// (face vectors of every track), the dead letters (camera input), and
// pending input and sightings (camera frames; an hour at most, since older
// input is useless for live alerts).
func (l Limits) WithRetention(retention, unmatched time.Duration) Limits {
	l.AlertsMaxAge = retention
	l.Retention = unmatched
	l.DLQMaxAge = unmatched
	l.IngestMaxAge = min(l.IngestMaxAge, unmatched)
	return l
}

// Validate checks what the definitions rely on.
func (l Limits) Validate() error {
	switch {
	case l.Partitions < 1 || l.Partitions > 1024:
		return fmt.Errorf("partitions %d: want 1..1024", l.Partitions)
	case l.PinnedTTL <= l.PartitionAckWait:
		return fmt.Errorf("pinned ttl %s must exceed the partition ack wait %s (ordering across owners)", l.PinnedTTL, l.PartitionAckWait)
	case l.PartitionMaxAckPending < 1:
		return fmt.Errorf("partition max ack pending %d: want at least 1", l.PartitionMaxAckPending)
	case l.MemberTTL <= 0:
		return fmt.Errorf("member ttl %s: want > 0", l.MemberTTL)
	case l.AuditRetention <= 0:
		return fmt.Errorf("audit retention %s: want > 0", l.AuditRetention)
	case l.Replicas < 1 || l.Replicas > 5:
		return fmt.Errorf("replicas %d: want 1..5", l.Replicas)
	}
	return nil
}

// Definitions returns every stream of the service.
func Definitions(l Limits) []jetstream.StreamConfig {
	defs := []jetstream.StreamConfig{
		{
			Name:        Ingest,
			Description: "validated camera input from the MQTT bridge",
			// One token per camera: a subject that already carries a
			// partition token is refused rather than stored unpartitioned.
			Subjects:         []string{IngestFrame + ".*", IngestSceneScape + ".*", IngestImage + ".*", IngestRegion + ".>"},
			SubjectTransform: IngestTransform(l.Partitions),
			// Interest retention: a message is kept until every consumer
			// bound to its subject has acknowledged it.
			Retention:  jetstream.InterestPolicy,
			Discard:    jetstream.DiscardNew,
			MaxAge:     l.IngestMaxAge,
			MaxBytes:   l.IngestMaxBytes,
			MaxMsgSize: 16 << 20,
			Duplicates: l.DuplicateWindow,
			Storage:    jetstream.FileStorage,
		},
		{
			Name:        Sightings,
			Description: "tracked face observations for the alert stage",
			Subjects:    []string{SightingsSubj + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     jetstream.DiscardNew,
			MaxAge:      l.IngestMaxAge,
			MaxBytes:    l.IngestMaxBytes / 4,
			Duplicates:  l.DuplicateWindow,
			Storage:     jetstream.FileStorage,
		},
		{
			Name:        Samples,
			Description: "every vector of the all-detections index, for replica replay",
			Subjects:    []string{SamplesSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      l.Retention,
			Duplicates:  l.DuplicateWindow,
			Storage:     jetstream.FileStorage,
		},
		{
			Name:        Alerts,
			Description: "POI match alerts (one element of GET /api/v1/alerts per message) and their reviews",
			Subjects:    []string{AlertsSubj + ".>", ReviewsSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			// Old alerts make way for new ones: a full alert stream must
			// never stop live alerting.
			Discard:    jetstream.DiscardOld,
			MaxAge:     l.AlertsMaxAge,
			Duplicates: l.DuplicateWindow,
			Storage:    jetstream.FileStorage,
		},
		{
			Name:        Control,
			Description: "POI enrolments and deletions for every POI index replica",
			Subjects:    []string{ControlSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      24 * time.Hour,
			// The enrolment outbox re-publishes with the same Nats-Msg-Id
			// until it sees an ack: the window drops the repeats.
			Duplicates: l.DuplicateWindow,
			Storage:    jetstream.FileStorage,
		},
		{
			Name:        DeadLetter,
			Description: "messages that failed every delivery attempt",
			Subjects:    []string{DeadLetterSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      l.DLQMaxAge,
			MaxBytes:    1 << 30,
			Storage:     jetstream.FileStorage,
		},
		{
			Name:        Audit,
			Description: "audit trail of the API and the CLI: append-only",
			Subjects:    []string{AuditSubj + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      l.AuditRetention,
			// Nobody, not even an admin with NATS access through the
			// service's API, removes a record before its time.
			DenyDelete: true,
			DenyPurge:  true,
			Storage:    jetstream.FileStorage,
		},
	}
	for i := range defs {
		defs[i].Replicas = l.Replicas
	}
	return defs
}

// ConsumerDef is a durable pull consumer and the stream it reads.
type ConsumerDef struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// Consumers returns every durable consumer of the service. maxDeliver bounds
// delivery attempts before a message goes to the dead-letter stream.
func Consumers(l Limits, maxDeliver int) []ConsumerDef {
	pull := func(stream, name, desc string, ackWait time.Duration, maxAck int, subjects ...string) ConsumerDef {
		return ConsumerDef{Stream: stream, Config: jetstream.ConsumerConfig{
			Durable:        name,
			Description:    desc,
			FilterSubjects: subjects,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        ackWait,
			MaxDeliver:     maxDeliver,
			// Bounded in flight across all workers of the pool: beyond it,
			// delivery pauses until acks come back (back-pressure).
			MaxAckPending: maxAck,
		}}
	}
	defs := []ConsumerDef{
		pull(Ingest, ConsumerFrames, "SceneScape camera images into the frame cache", 30*time.Second, 256, IngestImage+".*.*"),
		pull(Ingest, ConsumerZones, "region events into zone appearances", 30*time.Second, 256, IngestRegion+".>"),
		pull(Sightings, ConsumerAlert, "POI matching and alerting", 30*time.Second, 1024, SightingsSubj+".>"),
	}
	// The tracker: one consumer per partition, pinned to one client at a
	// time (the partition's owner), which handles its cameras in order.
	for p := range l.Partitions {
		d := pull(Ingest, IndexConsumer(p), fmt.Sprintf("tracking of the cameras of partition %d", p),
			l.PartitionAckWait, l.PartitionMaxAckPending, IngestPartitionFilters(p)...)
		d.Config.PriorityPolicy = jetstream.PriorityPolicyPinned
		d.Config.PinnedTTL = l.PinnedTTL
		d.Config.PriorityGroups = []string{PriorityGroup}
		defs = append(defs, d)
	}
	return defs
}

// Declare creates or updates every stream and consumer. It logs what it
// created or changed, so that an edited definition is visible in the logs.
//
// Several processes may declare at once on a fresh cluster, and a cluster
// that is still electing its meta leader refuses requests for a moment: a
// step that fails for such a reason (see retryable) is read and applied
// again until ctx ends, so the last writer of an identical definition wins
// and nobody fails to start.
func Declare(ctx context.Context, js jetstream.JetStream, l Limits, maxDeliver int, log *slog.Logger) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("declare streams: %w", err)
	}
	for _, sc := range Definitions(l) {
		if err := retry(ctx, log, "stream "+sc.Name, func(ctx context.Context) error { return declareStream(ctx, js, sc, log) }); err != nil {
			return err
		}
	}
	members := jetstream.KeyValueConfig{
		Bucket: Members, Description: "worker processes of each partitioned stage", TTL: l.MemberTTL,
		Storage: jetstream.MemoryStorage, History: 1, Replicas: l.Replicas,
	}
	if err := retry(ctx, log, "bucket "+Members, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateKeyValue(ctx, members)
		return err
	}); err != nil {
		return fmt.Errorf("declare bucket %s: %w", Members, err)
	}
	for _, cd := range Consumers(l, maxDeliver) {
		if err := retry(ctx, log, "consumer "+cd.Stream+"/"+cd.Config.Durable, func(ctx context.Context) error { return declareConsumer(ctx, js, cd, log) }); err != nil {
			return err
		}
	}
	return nil
}

func declareStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig, log *slog.Logger) error {
	prev, err := js.Stream(ctx, sc.Name)
	var before *jetstream.StreamConfig
	switch {
	case err == nil:
		c := prev.CachedInfo().Config
		before = &c
	case errors.Is(err, jetstream.ErrStreamNotFound):
	default:
		return fmt.Errorf("declare stream %s: %w", sc.Name, err)
	}
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return fmt.Errorf("declare stream %s: %w", sc.Name, err)
	}
	after := s.CachedInfo().Config
	changed := before != nil && !reflect.DeepEqual(*before, after)
	logChange(log, "stream", sc.Name, before != nil, changed)
	if changed && before.Replicas != after.Replicas {
		log.Warn("stream replicas changed", "stream", sc.Name, "from", before.Replicas, "to", after.Replicas)
	}
	return nil
}

func declareConsumer(ctx context.Context, js jetstream.JetStream, cd ConsumerDef, log *slog.Logger) error {
	prev, err := js.Consumer(ctx, cd.Stream, cd.Config.Durable)
	var before *jetstream.ConsumerConfig
	switch {
	case err == nil:
		c := prev.CachedInfo().Config
		before = &c
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	default:
		return fmt.Errorf("declare consumer %s/%s: %w", cd.Stream, cd.Config.Durable, err)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, cd.Stream, cd.Config)
	if err != nil {
		return fmt.Errorf("declare consumer %s/%s: %w", cd.Stream, cd.Config.Durable, err)
	}
	logChange(log, "consumer", cd.Stream+"/"+cd.Config.Durable, before != nil, before != nil && !reflect.DeepEqual(*before, c.CachedInfo().Config))
	return nil
}

// attemptTimeout bounds one attempt of a declaration step. A clustered
// server does not answer an info request for a stream whose group has no
// leader yet (one just created by another process): the attempt times out
// and the next one finds the leader.
const attemptTimeout = 5 * time.Second

// retry runs step until it succeeds, fails for a reason retrying cannot
// cure, or ctx ends.
func retry(ctx context.Context, log *slog.Logger, what string, step func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := step(actx)
		cancel()
		timedOut := err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)
		if err == nil || !timedOut && !retryable(err) {
			return err
		}
		log.Info("declaring again", "what", what, "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// retryable tells the errors of a race or of a cluster that is not ready
// yet from a definition the server refuses: another process created the
// same stream or consumer between our read and our write, the meta leader
// is being elected, or a request went unanswered while the servers meet.
func retryable(err error) bool {
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamNameInUse, jetstream.JSErrCodeConsumerNameExists,
			jetstream.JSErrCodeConsumerAlreadyExists, jetstream.JSErrCodeConsumerExists,
			jetstream.JSErrCodeConsumerCreate, jetstream.JSErrCodeJetStreamNotEnabled,
			jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return true
		}
		// 503: "JetStream system temporarily unavailable" (no meta leader)
		// and "insufficient resources" while peers are still joining.
		return apiErr.Code == 503 || apiErr.Code == 500
	}
	return errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionReconnecting)
}

func logChange(log *slog.Logger, kind, name string, existed, changed bool) {
	switch {
	case !existed:
		log.Info("declared "+kind, kind, name, "action", "created")
	case changed:
		log.Warn("declared "+kind, kind, name, "action", "updated")
	default:
		log.Debug("declared "+kind, kind, name, "action", "unchanged")
	}
}
