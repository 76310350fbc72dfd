package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"poi/internal/cluster"
	"poi/internal/embedded"
	"poi/internal/loadgen"
	"poi/internal/mqttclient"
	"poi/internal/stacktest"
	"poi/internal/testenv"
	"poi/streams"
)

// clusterRun is the topology of compose.yaml on loopback: three nats-server
// nodes of one JetStream cluster (processes of their own), Redis with a
// replica and three Sentinels, an MQTT broker (in the test process, as
// compose's Mosquitto), and as real processes one `poi bridge`, two
// `poi worker` with every pool and two `poi api`.
type clusterRun struct {
	nats    *cluster.NATSCluster
	redis   *cluster.RedisHA
	mqtt    *embedded.MQTT
	bridge  *proc
	workers []*proc
	apis    []*proc
	js      jetstream.JetStream
	rc      *redis.Client // the current primary, through the Sentinels
	mq      *mqttclient.Client
	base    time.Time
	// sent counts the frames published per camera (broker-acknowledged).
	sent map[string]int
}

func startCluster(t *testing.T) *clusterRun {
	t.Helper()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := &clusterRun{nats: cluster.StartNATS(t, 3), redis: cluster.StartRedisHA(t), sent: map[string]int{},
		base: time.Now().UTC().Add(-time.Hour).Truncate(time.Second)}
	m := testenv.MQTT(t, embedded.MQTTOptions{}, discard)
	c.mqtt = m
	sentinels, _ := json.Marshal(c.redis.SentinelAddrs())
	env := []string{
		"POI_NATS_URL=" + c.nats.URL(), "POI_NATS_REPLICAS=3",
		"POI_MQTT_URL=tcp://" + m.Addr(),
		"POI_REDIS_SENTINEL_ADDRS=" + string(sentinels), "POI_REDIS_SENTINEL_MASTER=" + cluster.SentinelMaster,
		"POI_REDIS_WAIT_REPLICAS=1", "POI_REDIS_WAIT_TIMEOUT=200ms",
		"POI_PIPELINE_TRACK_SILENCE=3s", "POI_LOG_LEVEL=info",
	}
	// The URL names the first primary; with Sentinels only its database counts.
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", c.redis.Nodes[0].Port)
	withMetrics := func() []string {
		return append(append([]string(nil), env...), "POI_METRICS_ADDR=127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)))
	}
	for range 2 {
		c.workers = append(c.workers, startPoi(t, redisURL, withMetrics(), "worker", "--pools", "detect,embed,index,alert"))
	}
	for range 2 {
		c.apis = append(c.apis, startPoi(t, redisURL, env, "api"))
	}
	c.bridge = startPoi(t, redisURL, withMetrics(), "bridge")
	for _, a := range c.apis {
		waitStatus(t, a, 3*time.Minute, "an API process", func(code int, s status) bool { return code == 200 })
	}
	stacktest.Eventually(t, 2*time.Minute, "both workers own partitions", func() bool {
		total := 0
		for _, w := range c.workers {
			n := ownedPartitions(t, w)
			if n <= 0 {
				return false
			}
			total += n
		}
		return total == streams.DefaultLimits().Partitions
	})
	stacktest.Eventually(t, time.Minute, "the bridge is healthy", func() bool {
		resp, err := http.Get("http://" + metricsAddr(c.bridge) + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	nc, err := nats.Connect(c.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c.js, _ = jetstream.New(nc)
	c.rc = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: cluster.SentinelMaster, SentinelAddrs: c.redis.SentinelAddrs()})
	t.Cleanup(func() { c.rc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.mq, err = mqttclient.Connect(ctx, mqttclient.Options{URL: "tcp://" + m.Addr(), ConnectTimeout: 5 * time.Second}, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.mq.Close(100 * time.Millisecond) })
	return c
}

func metricsAddr(p *proc) string {
	for _, e := range p.cmd.Env {
		if len(e) > len("POI_METRICS_ADDR=") && e[:len("POI_METRICS_ADDR=")] == "POI_METRICS_ADDR=" {
			return e[len("POI_METRICS_ADDR="):]
		}
	}
	return ""
}

// metric sums the samples of name whose labels include labels, from the
// /metrics of a process with metrics_addr.
func metric(p *proc, name string, labels map[string]string) (float64, error) {
	resp, err := http.Get("http://" + metricsAddr(p) + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	samples, err := loadgen.ParseMetrics(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
next:
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for k, v := range labels {
			if s.Labels[k] != v {
				continue next
			}
		}
		sum += s.Value
	}
	return sum, nil
}

// publish sends frames [from, to) of each camera, interleaved, in each
// camera's own time (100 ms apart), cycling through photos.
func (c *clusterRun) publish(t *testing.T, cams []string, photos map[string][]string, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	jpegs := map[string][]byte{}
	for k := from; k < to; k++ {
		for _, cam := range cams {
			p := photos[cam][k%len(photos[cam])]
			if jpegs[p] == nil {
				jpegs[p] = testenv.ReadPhoto(t, p)
			}
			ts := c.base.Add(time.Duration(k) * 100 * time.Millisecond)
			if err := c.mq.Publish(ctx, "poi/frames/"+cam, 1, false, stacktest.FrameJSON(jpegs[p], ts)); err != nil {
				t.Fatalf("publish %s frame %d: %v", cam, k, err)
			}
			c.sent[cam]++
		}
	}
}

// tracked is how many ingest messages the trackers acknowledged (a trigger
// for the disturbance, not a measure: redeliveries count again).
func (c *clusterRun) tracked(ctx context.Context) uint64 {
	var n uint64
	for p := range streams.DefaultLimits().Partitions {
		cons, err := c.js.Consumer(ctx, streams.Ingest, streams.IndexConsumer(p))
		if err != nil {
			return 0
		}
		n += cons.CachedInfo().AckFloor.Consumer
	}
	return n
}

// settle waits until nothing is left to process and every track has
// exited, then counts the frames tracked per camera from the track records.
func (c *clusterRun) settle(t *testing.T, cams []string, within time.Duration) map[string]int {
	t.Helper()
	ctx := t.Context() // no deadline: each request gets the client's own timeout
	stacktest.Eventually(t, within, "every frame tracked and every track closed", func() bool {
		for _, name := range []string{streams.Ingest, streams.Sightings} {
			s, err := c.js.Stream(ctx, name)
			if err != nil || s.CachedInfo().State.Msgs != 0 {
				return false
			}
		}
		for _, cam := range cams {
			raw, err := c.rc.Get(ctx, "track:state:"+cam).Bytes()
			if err != nil {
				return false
			}
			var st struct {
				Tracks []json.RawMessage `json:"tracks"`
			}
			if json.Unmarshal(raw, &st) != nil || len(st.Tracks) != 0 {
				return false
			}
		}
		return true
	})
	frames := map[string]int{}
	iter := c.rc.Scan(ctx, 0, "track:cam:*", 1000).Iterator()
	for iter.Next(ctx) {
		m := c.rc.HGetAll(ctx, iter.Val()).Val()
		n, _ := strconv.Atoi(m["frames"])
		frames[m["camera_id"]] += n
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return frames
}

// checkExactlyOnce compares the frames tracked per camera with the frames
// sent, which the bridge all stored (it rejected none).
func (c *clusterRun) checkExactlyOnce(t *testing.T, frames map[string]int) {
	t.Helper()
	rejected, err := metric(c.bridge, "poi_stage_rejected_total", map[string]string{"stage": "bridge"})
	if err != nil {
		t.Fatal(err)
	}
	if rejected != 0 {
		t.Errorf("the bridge rejected %v frames", rejected)
	}
	for cam, n := range c.sent {
		if frames[cam] != n {
			t.Errorf("camera %s: %d frames tracked, want every frame the bridge stored exactly once (%d)", cam, frames[cam], n)
			c.logTracks(t, cam)
		}
	}
}

// logTracks shows a camera's track records and tracker state, to tell a
// lost commit (a record overwritten by a reused track id) from a frame
// never tracked.
func (c *clusterRun) logTracks(t *testing.T, cam string) {
	t.Helper()
	ctx := context.Background()
	iter := c.rc.Scan(ctx, 0, "track:cam:"+cam+":*", 1000).Iterator()
	for iter.Next(ctx) {
		m := c.rc.HGetAll(ctx, iter.Val()).Val()
		t.Logf("  %s frames=%s entry=%s exit=%s", iter.Val(), m["frames"], m["entry"], m["exit"])
	}
	st, _ := c.rc.Get(ctx, "track:state:"+cam).Result()
	v, _ := c.rc.Get(ctx, "track:version:"+cam).Result()
	t.Logf("  state %.200s version %s", st, v)
}

// alerts fetches GET /api/v1/alerts of an API process.
func alerts(t *testing.T, p *proc) []streams.Alert {
	t.Helper()
	resp, err := http.Get(p.api + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []streams.Alert
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("alerts: %d", resp.StatusCode)
	}
	return out
}

func getCode(t *testing.T, method, url string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// cameraPhotos gives cam-0 the enrolled person's video frames and the
// other cameras other people, a few frames each.
func cameraPhotos(n int) ([]string, map[string][]string) {
	others := [][]string{
		each(5, "cage.jpg", "obama4_crop.jpg"), each(5, "kim1_crop.jpg", "chuck_crop.jpg"),
		each(5, "obama4_crop.jpg", "cage.jpg"), each(5, "chuck_crop.jpg", "kim1_crop.jpg"),
	}
	var cams []string
	photos := map[string][]string{}
	for i := range n {
		cam := fmt.Sprintf("cam-%d", i)
		cams = append(cams, cam)
		if i == 0 {
			photos[cam] = franckFrames
		} else {
			photos[cam] = others[i%len(others)]
		}
	}
	return cams, photos
}

// TestClusterEnrolOnOneAPIDeleteOnTheOther: a POI enrolled through API A is
// found by a search through API B, and raises alerts from frames tracked
// by either worker (one camera on each); its deletion through B is applied
// by A and by both workers (no further alert from either).
func TestClusterEnrolOnOneAPIDeleteOnTheOther(t *testing.T) {
	c := startCluster(t)
	a, b := c.apis[0], c.apis[1]
	poi := stacktest.Enroll(t, a.api, nil, "franck_01829.jpg")
	enrolled := time.Now()
	stacktest.Eventually(t, time.Minute, "the POI found by a search through B", func() bool {
		return searchMatch(t, b, "franck_01829.jpg") == poi
	})
	t.Logf("enrolled through A, found by a search through B after %v", time.Since(enrolled).Round(time.Millisecond))
	if code := getCode(t, "GET", b.api+"/api/v1/poi/"+poi); code != 200 {
		t.Fatalf("GET the POI through B: %d", code)
	}
	cams := []string{c.cameraOn(t, "cam-early", 0), c.cameraOn(t, "cam-early", 1)}
	photos := map[string][]string{cams[0]: franckFrames, cams[1]: franckFrames}
	c.publish(t, cams, photos, 0, 20)
	stacktest.Eventually(t, 2*time.Minute, "an alert of each camera through A and B", func() bool {
		return len(alerts(t, a)) == 2 && len(alerts(t, b)) == 2
	})
	for _, al := range alerts(t, b) {
		if al.POIID != poi || (al.Match.CameraID != cams[0] && al.Match.CameraID != cams[1]) {
			t.Fatalf("alert %+v, want %s on %v", al, poi, cams)
		}
	}
	for w, cam := range cams {
		if o := c.ownerOf(t, cam); o != w {
			t.Logf("camera %s moved from worker %d to %d meanwhile (a rebalance)", cam, w, o)
		}
	}

	if code := getCode(t, "DELETE", b.api+"/api/v1/poi/"+poi); code != 200 {
		t.Fatalf("delete through B: %d", code)
	}
	stacktest.Eventually(t, time.Minute, "A answers 404 for the deleted POI", func() bool {
		return getCode(t, "GET", a.api+"/api/v1/poi/"+poi) == 404
	})
	stacktest.Eventually(t, time.Minute, "A's search no longer finds the POI", func() bool {
		return searchMatch(t, a, "franck_01829.jpg") == ""
	})
	// The same person on a camera of each worker, after the deletion: the
	// workers track the frames but raise nothing.
	late := []string{c.cameraOn(t, "cam-late", 0), c.cameraOn(t, "cam-late", 1)}
	c.publish(t, late, map[string][]string{late[0]: franckFrames, late[1]: franckFrames}, 0, 20)
	frames := c.settle(t, append(cams, late...), 3*time.Minute)
	for _, cam := range late {
		if frames[cam] != 20 {
			t.Fatalf("%s: %d frames tracked, want 20", cam, frames[cam])
		}
	}
	for _, p := range c.apis {
		for _, al := range alerts(t, p) {
			if al.Match.CameraID == late[0] || al.Match.CameraID == late[1] {
				t.Fatalf("alert %+v after the POI was deleted", al)
			}
		}
	}
}

// ownerOf is the index of the worker that owns camera's tracker partition
// (poi_partition_owned), -1 while none does.
func (c *clusterRun) ownerOf(t *testing.T, camera string) int {
	t.Helper()
	p := strconv.Itoa(streams.Partition(camera, streams.DefaultLimits().Partitions))
	for i, w := range c.workers {
		if v, err := metric(w, "poi_partition_owned", map[string]string{"stage": "index", "partition": p}); err == nil && v == 1 {
			return i
		}
	}
	return -1
}

// cameraOn names a camera, prefix-N, whose partition worker w owns now.
func (c *clusterRun) cameraOn(t *testing.T, prefix string, w int) string {
	t.Helper()
	for n := range 200 {
		if cam := fmt.Sprintf("%s-%d", prefix, n); c.ownerOf(t, cam) == w {
			return cam
		}
	}
	t.Fatalf("no camera %s-N on a partition of worker %d", prefix, w)
	return ""
}

// searchMatch posts photo to POST /api/v1/search of an API process and
// returns the POI it matched ("" for none).
func searchMatch(t *testing.T, p *proc, photo string) string {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fw, _ := w.CreateFormFile("image", photo)
	fw.Write(testenv.ReadPhoto(t, photo))
	w.Close()
	resp, err := http.Post(p.api+"/api/v1/search", w.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		MatchedPOIID string `json:"matched_poi_id"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("search through %s: %d", p.api, resp.StatusCode)
	}
	return out.MatchedPOIID
}

// TestClusterSurvivesTheLossOfTheRedisPrimary: the Redis primary is
// SIGKILLed while frames flow, after a POI alerted. The Sentinels promote
// the replica, and with no operator action the APIs report running again
// and the workers process frames again. Writes the service waited for
// (wait_replicas 1) survive: the alert is not raised again by the track
// that continues after the failover, and POI_ALERTS holds it once.
func TestClusterSurvivesTheLossOfTheRedisPrimary(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context() // no deadline: each request gets the client's own timeout
	poi := stacktest.Enroll(t, c.apis[0].api, nil, "franck_01829.jpg")
	cams, photos := cameraPhotos(4)
	const half = 20
	c.publish(t, cams, photos, 0, half)
	stacktest.Eventually(t, 2*time.Minute, "the POI's alert", func() bool { return len(alerts(t, c.apis[0])) == 1 })
	stacktest.Eventually(t, 2*time.Minute, "half of the first frames tracked", func() bool { return c.tracked(ctx) >= uint64(len(cams)*half/2) })

	primary := c.redis.Primary(ctx)
	if primary < 0 {
		t.Fatal("no primary")
	}
	c.redis.Kill(primary)
	t.Logf("killed the redis primary (node %d) at %d acknowledged", primary, c.tracked(ctx))
	stacktest.Eventually(t, 2*time.Minute, "the sentinels promote the replica", func() bool { return c.redis.Primary(ctx) == 1-primary })
	for _, a := range c.apis {
		waitStatus(t, a, 2*time.Minute, "running status after the failover", func(code int, s status) bool {
			return code == 200 && s.Status == "running"
		})
	}
	c.publish(t, cams, photos, half, 2*half)
	frames := c.settle(t, cams, 4*time.Minute)
	// Every frame is tracked exactly once across the failover: a commit
	// whose WAIT failed with the primary is redone from what the promoted
	// replica holds (store.ErrUnconfirmed), not taken as done.
	for _, cam := range cams {
		if frames[cam] != c.sent[cam] {
			t.Errorf("camera %s: %d frames tracked, want every frame sent exactly once (%d)", cam, frames[cam], c.sent[cam])
			c.logTracks(t, cam)
		}
	}
	if rejected, err := metric(c.bridge, "poi_stage_rejected_total", map[string]string{"stage": "bridge"}); err != nil || rejected != 0 {
		t.Errorf("the bridge rejected %v frames (%v)", rejected, err)
	}
	for _, a := range c.apis {
		got := alerts(t, a)
		if len(got) != 1 || got[0].POIID != poi {
			t.Errorf("alerts through %s after the failover: %+v, want the one alert of %s", a.api, got, poi)
		}
	}
	s, err := c.js.Stream(ctx, streams.Alerts)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("POI_ALERTS holds %d alerts, want 1", n)
	}
}

// describeConsumers logs the state of every partition consumer of the
// trackers as the cluster sees it, to tell a consumer without a leader from
// one whose messages wait in a worker.
func (c *clusterRun) describeConsumers(t *testing.T) {
	t.Helper()
	for p := range streams.DefaultLimits().Partitions {
		name := streams.IndexConsumer(p)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cons, err := c.js.Consumer(ctx, streams.Ingest, name)
		cancel()
		if err != nil {
			t.Logf("  %s: %v", name, err)
			continue
		}
		i := cons.CachedInfo()
		leader := ""
		if i.Cluster != nil {
			leader = i.Cluster.Leader
		}
		t.Logf("  %s: leader %q pending %d ack_pending %d redelivered %d waiting %d delivered %d ack_floor %d pins %+v",
			name, leader, i.NumPending, i.NumAckPending, i.NumRedelivered, i.NumWaiting, i.Delivered.Stream, i.AckFloor.Stream, i.PriorityGroups)
	}
}

// trackedPast returns those of cams that have had a frame stored past
// stream sequence seq committed by the tracker (its state records the last
// sequence it applied).
func (c *clusterRun) trackedPast(ctx context.Context, cams []string, seq uint64) []string {
	var past []string
	for _, cam := range cams {
		raw, err := c.rc.Get(ctx, "track:state:"+cam).Bytes()
		if err != nil {
			continue
		}
		var st struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(raw, &st) == nil && st.Seq > seq {
			past = append(past, cam)
		}
	}
	return past
}

// consumerLeader names the node leading a partition consumer of the
// trackers ("" when that cannot be told).
func (c *clusterRun) consumerLeader(ctx context.Context, p int) string {
	cons, err := c.js.Consumer(ctx, streams.Ingest, streams.IndexConsumer(p))
	if err != nil || cons.CachedInfo().Cluster == nil {
		return ""
	}
	return cons.CachedInfo().Cluster.Leader
}
