package streams

import (
	"os"
	"testing"

	"poi/internal/cluster"
)

// TestMain lets the test binary also be a nats-server node of the clusters
// the tests start (cluster.StartNATS re-executes it as one).
func TestMain(m *testing.M) {
	cluster.ServeNodeIfAsked()
	os.Exit(m.Run())
}
