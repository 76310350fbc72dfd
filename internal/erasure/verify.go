package erasure

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/store"
	"poi/streams"
)

// Remains is one thing that still names an erased POI or holds its vectors.
type Remains struct {
	Where string `json:"where"` // redis, stream, replica, disk
	What  string `json:"what"`
}

func (r Remains) String() string { return r.Where + ": " + r.What }

// Report is the outcome of Verify.
type Report struct {
	POIID string `json:"poi_id"`
	// Remains is empty when the POI is gone everywhere that was checked.
	Remains []Remains `json:"remains"`
	// Replicas is how many POI index replicas answered.
	Replicas int `json:"replicas"`
	// Files is how many files under the data dir were read.
	Files int `json:"files"`
}

// OK reports whether nothing remains.
func (r Report) OK() bool { return len(r.Remains) == 0 }

// VerifyDeps are what Verify reads.
type VerifyDeps struct {
	Store *store.Store
	JS    jetstream.JetStream
	// DataDir holds the index snapshots and the embedded JetStream files.
	DataDir string
	// ReplicaWait bounds how long replicas have to answer.
	ReplicaWait time.Duration
	// Vectors, when known (a caller that read them before the purge), are
	// looked for byte for byte in the files under DataDir.
	Vectors [][]float32
}

// Verify checks every store for what names the POI or holds its vectors:
//   - Redis: a key whose name holds the id (store.KeysNaming; the tombstone
//     is named by a hash and holds only the purge state), a purge still
//     pending, an entry in the control outbox, an alert in the recent list;
//   - POI_CONTROL: any message on the POI's subjects (and legacy messages
//     naming it); POI_ALERTS: any alert of the POI;
//   - every running POI index replica: a FAISS id of the POI. Each consumer
//     of POI_CONTROL is one replica; one that does not answer within
//     ReplicaWait is reported, since nothing is then proven about it;
//   - files under DataDir (index snapshots, embedded JetStream, but not
//     DataDir/redis, which is Redis's own persistence): the id, or a
//     reference vector when Vectors are given.
//
// An error means a check could not run; the report is then incomplete.
func Verify(ctx context.Context, d VerifyDeps, id string) (Report, error) {
	r := Report{POIID: id}
	if err := verifyRedis(ctx, d.Store, id, &r); err != nil {
		return r, err
	}
	for _, c := range []struct {
		stream  string
		filters []string
	}{{streams.Control, controlFilters(id)}, {streams.Alerts, alertFilters(id)}} {
		msgs, err := messagesNaming(ctx, d.JS, c.stream, c.filters, id)
		if err != nil {
			return r, err
		}
		for _, m := range msgs {
			r.Remains = append(r.Remains, Remains{"stream", fmt.Sprintf("%s message %d on %s", c.stream, m.Seq, m.Subject)})
		}
	}
	if err := verifyReplicas(ctx, d, id, &r); err != nil {
		return r, err
	}
	if err := verifyFiles(d, id, &r); err != nil {
		return r, err
	}
	return r, nil
}

func verifyRedis(ctx context.Context, st *store.Store, id string, r *Report) error {
	keys, err := st.KeysNaming(ctx, id)
	if err != nil {
		return err
	}
	for _, k := range keys {
		r.Remains = append(r.Remains, Remains{"redis", "key " + k})
	}
	state, err := st.EraseState(ctx, id)
	if err != nil {
		return err
	}
	if state == store.ErasePurging {
		r.Remains = append(r.Remains, Remains{"redis", "the purge began and has not finished"})
	}
	pending, err := st.ErasePendingHas(ctx, id)
	if err != nil {
		return err
	}
	if pending {
		r.Remains = append(r.Remains, Remains{"redis", "listed in " + st.Keys().ErasePending()})
	}
	queued, err := st.OutboxHas(ctx, id)
	if err != nil {
		return err
	}
	if queued {
		r.Remains = append(r.Remains, Remains{"redis", "listed in " + st.Keys().ControlOutbox()})
	}
	alerts, err := st.AlertsOf(ctx, id)
	if err != nil {
		return err
	}
	if len(alerts) > 0 {
		r.Remains = append(r.Remains, Remains{"redis", fmt.Sprintf("%d alerts in %s", len(alerts), st.Keys().AlertsRecent())})
	}
	return nil
}

// verifyReplicas asks every replica on ReplicaQuery and waits for as many
// answers as POI_CONTROL has consumers.
func verifyReplicas(ctx context.Context, d VerifyDeps, id string, r *Report) error {
	s, err := d.JS.Stream(ctx, streams.Control)
	if err != nil {
		return fmt.Errorf("stream %s: %w", streams.Control, err)
	}
	want := 0
	l := s.ListConsumers(ctx)
	for range l.Info() {
		want++
	}
	if err := l.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return fmt.Errorf("list consumers: %w", err)
	}
	nc := d.JS.Conn()
	inbox := nc.NewRespInbox()
	answers := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return fmt.Errorf("replica query: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(streams.ReplicaQuery, inbox, []byte(id)); err != nil {
		return fmt.Errorf("replica query: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, d.ReplicaWait)
	defer cancel()
	for r.Replicas < want {
		select {
		case m := <-answers:
			var h streams.ReplicaHolding
			if err := streams.Decode(m.Data, &h); err != nil {
				return fmt.Errorf("replica answer: %w", err)
			}
			r.Replicas++
			if h.FAISSIDs > 0 {
				r.Remains = append(r.Remains, Remains{"replica", fmt.Sprintf("%s holds %d FAISS ids", h.Replica, h.FAISSIDs)})
			}
		case <-wctx.Done():
			r.Remains = append(r.Remains, Remains{"replica", fmt.Sprintf("%d of the %d consumers of %s did not answer within %s (a replica that is down or stuck proves nothing)",
				want-r.Replicas, want, streams.Control, d.ReplicaWait)})
			return nil
		}
	}
	return nil
}

func verifyFiles(d VerifyDeps, id string, r *Report) error {
	if d.DataDir == "" {
		return nil
	}
	needles := map[string][]byte{"the poi id": []byte(id)}
	for i, v := range d.Vectors {
		needles[fmt.Sprintf("reference vector %d", i+1)] = store.EncodeVector(v)
	}
	vectorsOnly := map[string][]byte{}
	for k, v := range needles {
		if k != "the poi id" {
			vectorsOnly[k] = v
		}
	}
	skip := filepath.Join(d.DataDir, "redis")
	err := filepath.WalkDir(d.DataDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (a snapshot being replaced)
			}
			return err
		}
		if e.IsDir() {
			if path == skip {
				return filepath.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		want := needles
		if strings.Contains(path, string(filepath.Separator)+streams.Audit+string(filepath.Separator)) {
			// The audit trail records who erased whom, so it names the POI
			// by design (README, "Security and privacy"); it must never
			// hold its vectors, which is still checked.
			want = vectorsOnly
		}
		found, err := fileHolds(path, want)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		r.Files++
		for _, what := range found {
			rel, _ := filepath.Rel(d.DataDir, path)
			r.Remains = append(r.Remains, Remains{"disk", fmt.Sprintf("%s holds %s", rel, what)})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", d.DataDir, err)
	}
	return nil
}

// fileHolds reads the file once, in chunks that overlap by the longest
// needle, and returns which needles it contains.
func fileHolds(path string, needles map[string][]byte) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n))
	}
	br := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 0, 1<<20+longest)
	hit := map[string]bool{}
	chunk := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(br, chunk)
		buf = append(buf, chunk[:n]...)
		for what, needle := range needles {
			if !hit[what] && bytes.Contains(buf, needle) {
				hit[what] = true
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			return nil, err
		}
		keep := min(len(buf), longest-1)
		buf = append(buf[:0], buf[len(buf)-keep:]...)
	}
	var out []string
	for what := range hit {
		out = append(out, what)
	}
	return out, nil
}

// String renders the report for the command line.
func (r Report) String() string {
	var b strings.Builder
	if r.OK() {
		fmt.Fprintf(&b, "%s: nothing remains (%d replicas answered, %d files read)\n", r.POIID, r.Replicas, r.Files)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %d things remain:\n", r.POIID, len(r.Remains))
	for _, x := range r.Remains {
		fmt.Fprintf(&b, "  %s\n", x)
	}
	return b.String()
}

// MarshalJSON keeps Remains a list, never null.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	if r.Remains == nil {
		r.Remains = []Remains{}
	}
	return json.Marshal(plain(r))
}
