package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/mqttclient"
	"poi/internal/stacktest"
	"poi/internal/testenv"
)

// TestEmbeddedBrokerAccountsGateTheBridge runs the service with
// mqtt.accounts: the service's own login (bridge, alerts) works, a camera
// with its password gets its frames in, and a client without credentials
// is not let in.
func TestEmbeddedBrokerAccountsGateTheBridge(t *testing.T) {
	accounts := `[{"username":"poi","password":"service-secret","topics":["#"]},{"username":"door","password":"door-secret","cameras":["cam-door"]}]`
	s := stacktest.Start(t, stacktest.Options{Pools: []string{"embed"}, Env: []string{
		"POI_MQTT_USERNAME=poi", "POI_MQTT_PASSWORD=service-secret", "POI_MQTT_ACCOUNTS=" + accounts,
	}})
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	connect := func(user, password string) (*mqttclient.Client, error) {
		cl, err := mqttclient.Connect(ctx, mqttclient.Options{URL: s.MQTTURL, Username: user, Password: password, ConnectTimeout: 3 * time.Second}, log)
		if cl != nil {
			t.Cleanup(func() { cl.Close(0) })
		}
		return cl, err
	}
	if _, err := connect("", ""); err == nil {
		t.Fatal("a client without credentials was let in")
	}
	door, err := connect("door", "door-secret")
	if err != nil {
		t.Fatalf("the door camera with its password: %v", err)
	}
	if err := door.Publish(ctx, "poi/frames/cam-door", 1, false, stacktest.FrameJSON(testenv.ReadPhoto(t, "franck_02045.jpg"), time.Now())); err != nil {
		t.Fatal(err)
	}
	m := s.Node.Metrics()
	testenv.EventuallyNil(t, time.Minute, "the door camera's frame stored by the bridge", func() error {
		if testutil.ToFloat64(m.Processed.WithLabelValues("bridge")) >= 1 {
			return nil
		}
		return errors.New("not yet")
	})
}
