//go:build sessiontakeover

package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/testenv"
)

// TestRestartedBridgeTakesOverItsSession stops the bridge while frames
// flow, keeps publishing while none runs, and starts a new bridge on the
// same session id. It fails now and then (a few frames published around the
// takeover are never delivered to the new session; not yet understood
// whether mochi or the client loses them), so it is kept out of the default
// suite: go test -race -tags sessiontakeover -run TestRestartedBridge ./bridge
func TestRestartedBridgeTakesOverItsSession(t *testing.T) {
	r := newRig(t, 4096, DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := newPublisher(t, r, "session-cam")
	stopFlow := make(chan struct{})
	flowDone := p.flow(ctx, t, 5*time.Millisecond, stopFlow)
	processed := func() int { return int(testutil.ToFloat64(r.m.Processed.WithLabelValues("bridge"))) }
	testenv.Eventually(t, time.Minute, "50 frames stored", func() bool { return processed() >= 50 })
	r.stopBridge()
	// While no bridge is connected the broker keeps the session's messages.
	for range 100 {
		if err := p.send(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r.startBridge(DefaultConfig())
	at := processed()
	testenv.Eventually(t, time.Minute, "frames stored by the restarted bridge", func() bool { return processed() >= at+150 })
	close(stopFlow)
	<-flowDone

	total := len(p.accepted())
	testenv.EventuallyNil(t, time.Minute, "every accepted frame stored", func() error {
		if processed() >= total && testutil.ToFloat64(r.m.BridgeUnacked) == 0 {
			return nil
		}
		return fmt.Errorf("accepted %d, processed %d, redelivered %v, unacked %v, broker dropped %d, connected %v", total, processed(),
			testutil.ToFloat64(r.m.Redelivered.WithLabelValues("bridge")), testutil.ToFloat64(r.m.BridgeUnacked), r.broker.Dropped(), r.client.IsConnected())
	})
	if r.broker.Dropped() != 0 {
		t.Errorf("the broker dropped %d messages under its 4096 limit", r.broker.Dropped())
	}
	checkExactlyOnce(t, r, p, r.stored(ctx, "session-cam"))
	t.Logf("accepted %d, redelivered %v", total, testutil.ToFloat64(r.m.Redelivered.WithLabelValues("bridge")))
}
