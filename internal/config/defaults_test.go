package config_test

import (
	"testing"

	"poi/bridge"
	"poi/internal/config"
)

// The bridge's compiled-in defaults (used by tests and benchmarks) are the
// configuration's, so that there is one default.
func TestBridgeDefaultsAreTheConfigurations(t *testing.T) {
	c, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := bridge.DefaultConfig()
	if d.QueueSize != c.Bridge.QueueSize || d.PublishTimeout != c.Bridge.PublishTimeout {
		t.Fatalf("bridge.DefaultConfig() queue %d, publish timeout %s; configs/poi.yaml %d, %s",
			d.QueueSize, d.PublishTimeout, c.Bridge.QueueSize, c.Bridge.PublishTimeout)
	}
}
