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
	}
	for _, c := range []prometheus.Collector{m.Received, m.Processed, m.Rejected, m.Redelivered, m.DeadLettered, m.Latency, m.Alerts, m.Embeddings, m.FacesSeen, m.TracksOpen, m.TracksClose} {
		f(c)
	}
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
