//go:build resumeflood

package mqttclient

// A reproducer of a known gap (README, "Delivery guarantees"), kept out of
// the default suite because it fails:
// go test -race -tags resumeflood -run TestReconnectUnderAFloodLosesNothing -v ./internal/mqttclient

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"poi/internal/embedded"
	"poi/internal/testenv"
)

// TestReconnectUnderAFloodLosesNothing is the bridge's session resume on the
// embedded broker while a publisher floods: a persistent client leaves
// messages unacknowledged for a moment, as the bridge does when its queue is
// full, then resumes its session (Reconnect), three times; every message
// must arrive. It does not: on 2026-12-03 it ended 36 to 550 of 40,000 short
// without -race (contiguous runs published around a resume) and 1,424 of
// 30,000 short with it, with nothing counted as dropped by the broker.
// Staying disconnected for a second before reconnecting avoided the loss in
// 3 runs without -race, but not with it, so it is not the fix.
func TestReconnectUnderAFloodLosesNothing(t *testing.T) {
	const n, rounds = 30000, 3
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	broker := testenv.MQTT(t, embedded.MQTTOptions{MaxInflight: 65535}, log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var mu sync.Mutex
	seen := map[int]bool{}
	holding := false
	sub, err := New(Options{URL: "tcp://" + broker.Addr(), ClientID: "resume-flood", Persistent: true, ManualAck: true,
		ConnectTimeout: 5 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close(0)
	if err := sub.Subscribe(ctx, "flood/#", 1, func(_ paho.Client, m paho.Message) {
		i, _ := strconv.Atoi(string(m.Payload()))
		mu.Lock()
		defer mu.Unlock()
		if holding {
			return // left unacknowledged: the broker resends it after the resume
		}
		seen[i] = true
		m.Ack()
	}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pub, err := Connect(ctx, Options{URL: "tcp://" + broker.Addr(), ConnectTimeout: 5 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(0)
	window := make(chan paho.Token, 256)
	go func() {
		defer close(window)
		for i := range n {
			window <- pub.PublishAsync("flood/x", 1, []byte(strconv.Itoa(i)))
		}
	}()
	published := make(chan error, 1)
	go func() {
		var err error
		for tok := range window {
			if tok.Wait(); tok.Error() != nil && err == nil {
				err = tok.Error()
			}
		}
		published <- err
	}()
	received := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
	for round := range rounds {
		testenv.Eventually(t, 2*time.Minute, fmt.Sprintf("round %d's messages", round+1), func() bool {
			return received() > (round+1)*n/(rounds+2)
		})
		mu.Lock()
		holding = true
		mu.Unlock()
		time.Sleep(200 * time.Millisecond) // messages arrive and are left unacknowledged meanwhile
		if err := sub.Reconnect(ctx, func() { mu.Lock(); holding = false; mu.Unlock() }); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyNil(t, 2*time.Minute, "every message received", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == n {
			return nil
		}
		var missing []int
		for i := range n {
			if !seen[i] && len(missing) < 10 {
				missing = append(missing, i)
			}
		}
		return fmt.Errorf("%d of %d received, broker dropped %d; first missing %v", len(seen), n, broker.Dropped(), missing)
	})
}
