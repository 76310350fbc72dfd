// Package metrics holds the Prometheus collectors of the service: one set
// per process, registered on its own registry (no global state), served on
// GET /metrics.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the collectors every component reports to.
type Metrics struct {
	reg *prometheus.Registry

	// Stage counters, labelled by stage (bridge, detect, frames, zones,
	// index, alert, ...).
	Received     *prometheus.CounterVec
	Processed    *prometheus.CounterVec
	Rejected     *prometheus.CounterVec // stage, reason
	Redelivered  *prometheus.CounterVec
	DeadLettered *prometheus.CounterVec
	Latency      *prometheus.HistogramVec

	Alerts      *prometheus.CounterVec // severity
	Embeddings  prometheus.Counter
	FacesSeen   prometheus.Counter
	TracksOpen  prometheus.Counter
	TracksClose prometheus.Counter
	// FaceResends counts requests to the face services sent again after
	// going unanswered (face.resend_after).
	FaceResends prometheus.Counter

	// Partitioned stages and consumers.
	PartitionsOwned *prometheus.GaugeVec   // stage
	PartitionOwned  *prometheus.GaugeVec   // stage, partition: 1 while this process owns it
	Rebalances      *prometheus.CounterVec // stage
	ConsumerPending *prometheus.GaugeVec   // stage: messages not yet delivered (lag)
	AckPending      *prometheus.GaugeVec   // stage: delivered, not yet acknowledged

	// The MQTT side of the bridge (README, "Delivery guarantees").
	BridgeUnacked        prometheus.Gauge
	BridgeDeferred       prometheus.Counter
	BridgeResumes        prometheus.Counter
	BridgePublishRetries prometheus.Counter
}

// New creates and registers every collector.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{
		reg:          reg,
		Received:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "poi_stage_received_total", Help: "Messages a stage received."}, []string{"stage"}),
		Processed:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "poi_stage_processed_total", Help: "Messages a stage processed and acknowledged."}, []string{"stage"}),
		Rejected:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "poi_stage_rejected_total", Help: "Messages a stage rejected, by reason."}, []string{"stage", "reason"}),
		Redelivered:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "poi_stage_redelivered_total", Help: "Messages a stage received more than once."}, []string{"stage"}),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "poi_stage_dead_lettered_total", Help: "Messages a stage gave up on and sent to the dead-letter stream."}, []string{"stage"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "poi_stage_seconds", Help: "Time a stage spent on one message.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"stage"}),
		Alerts:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "poi_alerts_total", Help: "Alerts raised, by severity."}, []string{"severity"}),
		Embeddings:  prometheus.NewCounter(prometheus.CounterOpts{Name: "poi_embeddings_total", Help: "Faces embedded by this process."}),
		FacesSeen:   prometheus.NewCounter(prometheus.CounterOpts{Name: "poi_faces_detected_total", Help: "Faces detected in frames."}),
		TracksOpen:  prometheus.NewCounter(prometheus.CounterOpts{Name: "poi_tracks_opened_total", Help: "Face tracks opened."}),
		TracksClose: prometheus.NewCounter(prometheus.CounterOpts{Name: "poi_tracks_closed_total", Help: "Face tracks closed."}),
		FaceResends: prometheus.NewCounter(prometheus.CounterOpts{Name: "poi_face_requests_resent_total", Help: "Detection and embedding requests sent again after going unanswered for face.resend_after."}),

		PartitionsOwned: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "poi_partitions_owned", Help: "Partitions of a stage this process owns."}, []string{"stage"}),
		PartitionOwned:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "poi_partition_owned", Help: "1 for each partition of a stage this process owns, 0 once it released it."}, []string{"stage", "partition"}),
		Rebalances:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "poi_partition_rebalances_total", Help: "Changes of this process's partitions, by stage."}, []string{"stage"}),
		ConsumerPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "poi_consumer_pending", Help: "Messages waiting for a stage's consumers (lag), summed over its partitions."}, []string{"stage"}),
		AckPending:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "poi_consumer_ack_pending", Help: "Messages delivered to a stage and not yet acknowledged."}, []string{"stage"}),
	}
	m.BridgeUnacked = prometheus.NewGauge(prometheus.GaugeOpts{Name: "poi_bridge_unacknowledged", Help: "MQTT messages the bridge received and has not acknowledged yet (held while JetStream does not store them)."})
	m.BridgeDeferred = prometheus.NewCounter(prometheus.CounterOpts{Name: "poi_bridge_deferred_total", Help: "QoS 1 MQTT messages left unacknowledged because the bridge queue was full; the broker resends them after the session resume."})
	m.BridgeResumes = prometheus.NewCounter(prometheus.CounterOpts{Name: "poi_bridge_session_resumes_total", Help: "MQTT reconnects the bridge made to have deferred messages resent."})
	m.BridgePublishRetries = prometheus.NewCounter(prometheus.CounterOpts{Name: "poi_bridge_publish_retries_total", Help: "JetStream publishes the bridge redid because JetStream did not store a message."})
	for _, c := range []prometheus.Collector{m.BridgeUnacked, m.BridgeDeferred, m.BridgeResumes, m.BridgePublishRetries, m.Received, m.Processed, m.Rejected, m.Redelivered, m.DeadLettered, m.Latency, m.Alerts, m.Embeddings, m.FacesSeen, m.TracksOpen, m.TracksClose, m.FaceResends,
		m.PartitionsOwned, m.PartitionOwned, m.Rebalances, m.ConsumerPending, m.AckPending} {
		f(c)
	}
	return m
}

// AddBrokerDropped exports the embedded MQTT broker's count of messages it
// dropped at its own limits.
func (m *Metrics) AddBrokerDropped(f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "poi_mqtt_broker_dropped_total",
		Help: "Messages the embedded MQTT broker accepted and did not forward because of its own limits (a client's inflight store or write buffer full)."}, f))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
