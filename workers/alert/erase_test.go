package alert_test

import (
	"testing"
	"time"

	"poi/internal/erasure"
	"poi/streams"
)

// TestAlertRacingAnErasureResurrectsNothing: the POI is erased (the full
// purge, as DELETE runs it) while a matching sighting is being handled —
// right after the worker read the POI, right after its claim, and right
// after it published the alert. In each case, once the worker is done,
// nothing in Redis names the POI, POI_ALERTS holds no alert of it, MQTT got
// nothing, and the erasure proof passes.
func TestAlertRacingAnErasureResurrectsNothing(t *testing.T) {
	for _, point := range []string{"looked-up", "claimed", "published"} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t, time.Hour)
			purger := erasure.NewPurger(erasure.Config{TombstoneTTL: time.Hour, ReplicaWait: 5 * time.Second}, e.st, e.js, nil, discard())
			var onStreamAtPurge uint64
			purged := false
			e.stage.SetHook(func(at string) {
				if at != point || purged {
					return
				}
				purged = true
				onStreamAtPurge = e.published()[streams.Subject(streams.AlertsSubj, "high", poiHigh)]
				if found, err := purger.Purge(e.ctx, poiHigh); !found || err != nil {
					t.Errorf("purge at %s: %v %v", at, found, err)
				}
				if _, err := e.idx.Remove(poiHigh); err != nil {
					t.Error(err)
				}
			})
			e.mustHandle(sighting("cam:lobby:1", "lobby", base, withSimilarity(0.95)))
			if !purged {
				t.Fatalf("the handling never reached %q", point)
			}
			if point == "published" && onStreamAtPurge != 1 {
				t.Fatalf("at %q the alert was not on POI_ALERTS (%d): the case tests nothing", point, onStreamAtPurge)
			}
			keys, err := e.st.KeysNaming(e.ctx, poiHigh)
			if err != nil || len(keys) != 0 {
				t.Fatalf("keys naming the erased POI after the racing alert: %v %v", keys, err)
			}
			if n := e.totalPublished(); n != 0 {
				t.Fatalf("%d alerts of the erased POI left on POI_ALERTS", n)
			}
			if len(e.mqtt.sent()) != 0 || len(e.recent()) != 0 {
				t.Fatalf("the erased POI's alert went out: %d on MQTT, %d stored", len(e.mqtt.sent()), len(e.recent()))
			}
			rep, err := erasure.Verify(e.ctx, erasure.VerifyDeps{Store: e.st, JS: e.js, ReplicaWait: time.Second}, poiHigh)
			if err != nil || !rep.OK() {
				t.Fatalf("verify: %v\n%s", err, rep)
			}
			// The other POI is untouched and still alerts.
			e.mustHandle(sighting("cam:lobby:2", "lobby", base, []float32{0, 1, 0, 0}))
			if got := e.recent(); len(got) != 1 || got[0].POIID != poiLow {
				t.Fatalf("the other POI: %+v", got)
			}
		})
	}
}
