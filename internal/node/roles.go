package node

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"

	"poi/api"
	"poi/bridge"
	"poi/internal/camgate"
	"poi/internal/config"
	"poi/internal/erasure"
	"poi/internal/face"
	"poi/internal/faiss"
	"poi/internal/imaging"
	"poi/internal/outbox"
	"poi/internal/replica"
	"poi/internal/scenescape"
	"poi/internal/vectorindex"
	"poi/streams"
	"poi/workers/alert"
	"poi/workers/detect"
	"poi/workers/embed"
	"poi/workers/index"
	"poi/workers/partition"
	"poi/workers/pool"
	"poi/workers/zones"
)

func (n *Node) hasPool(p string) bool { return slices.Contains(n.roles.Pools, p) }

func (n *Node) imageLimits() imaging.Limits { return ImageLimits(n.cfg) }

// ImageLimits bounds the images the service decodes.
func ImageLimits(cfg config.Config) imaging.Limits {
	return imaging.Limits{MaxBytes: cfg.API.MaxImageBytes, MaxPixels: imaging.DefaultLimits().MaxPixels, MaxScans: cfg.API.MaxJPEGScans}
}

// CameraGate is the camera-id policy the cameras.* settings describe, with
// SceneScape's camera list when scenescape.url is set.
func CameraGate(cfg config.Config) *camgate.Gate {
	gc := camgate.Config{Known: cfg.Cameras.IDs(), AllowUnknown: cfg.Cameras.AllowUnknown,
		MaxUnknown: cfg.Cameras.MaxUnknown, IdleTTL: cfg.Cameras.IdleTTL}
	if cfg.SceneScape.URL != "" {
		ss := scenescape.New(cfg.SceneScape)
		gc.List = func(ctx context.Context) ([]string, error) {
			cams, err := ss.Cameras(ctx)
			if err != nil {
				return nil, err
			}
			ids := make([]string, len(cams))
			for i, c := range cams {
				ids[i] = c.ID
			}
			return ids, nil
		}
	}
	return camgate.New(gc)
}

// ErasureConfig is the purge the erasure.* settings describe (the API's
// DELETE and `poi erase` run the same one).
func ErasureConfig(cfg config.Config) erasure.Config {
	return erasure.Config{TombstoneTTL: cfg.Erasure.TombstoneTTL, ReplicaWait: cfg.Erasure.ReplicaWait}
}

// FaceConfig is the face engine the service's face.* settings describe: the
// one place that maps them, so the service, `poi eval` and
// `poi bench floor` run the same engine.
func FaceConfig(cfg config.Config) face.Config {
	fc := face.DefaultConfig()
	c := cfg.Face
	fc.ModelDir, fc.LibraryPath, fc.IntraOpThreads = c.ModelDir, c.ORTLibrary, c.IntraOpThreads
	fc.ScoreThreshold, fc.NMSIoU = float32(c.DetectThreshold), float32(c.NMSIoU)
	fc.MinFaceSize, fc.Limits = c.MinFacePx, ImageLimits(cfg)
	return fc
}

// startRoles builds the components of this process's roles. The face engine
// is loaded only where a pool runs models (detect, embed); other processes
// learn the embedding model from the embedding service.
func (n *Node) startRoles(ctx context.Context) error {
	var engine *face.Engine
	if n.hasPool("detect") || n.hasPool("embed") {
		e, err := face.New(FaceConfig(n.cfg))
		if err != nil {
			return fmt.Errorf("face.model_dir / face.ort_library: %w", err)
		}
		engine = e
		n.closers = append(n.closers, e.Close)
		n.log.Info("face engine loaded", "model", e.Model().Name, "dim", e.Model().Dim, "onnxruntime", e.RuntimeVersion())
	}
	embedClient := embed.NewClient(n.nc, streams.EmbedService, n.cfg.Face.RequestTimeout, n.cfg.Face.ResendAfter, n.metrics.FaceResends)
	detectClient := embed.NewClient(n.nc, streams.DetectService, n.cfg.Face.RequestTimeout, n.cfg.Face.ResendAfter, n.metrics.FaceResends)
	// The detection and embedding services: the same engine behind two
	// subjects and queue groups, so each scales with the processes that
	// run its pool.
	for _, svcDef := range []struct{ pool, subject, queue string }{
		{"embed", streams.EmbedService, streams.EmbedQueue},
		{"detect", streams.DetectService, streams.DetectQueue},
	} {
		if !n.hasPool(svcDef.pool) {
			continue
		}
		svc := embed.NewService(engine, n.imageLimits(), runtime.NumCPU(), n.metrics, n.log)
		if err := svc.Subscribe(n.nc, svcDef.subject, svcDef.queue); err != nil {
			return err
		}
		n.actors = append(n.actors, actor{svcDef.pool, svc.Run})
	}

	var model vectorindex.Model
	if n.roles.API || n.hasPool("alert") || n.hasPool("index") {
		if engine != nil {
			model = vectorindex.Model{Name: engine.Model().Name, Dim: engine.Model().Dim}
		} else {
			n.log.Info("waiting for an embedding worker to learn the model")
			rep, err := embedClient.Info(ctx)
			if err != nil {
				return err
			}
			model = vectorindex.Model{Name: rep.Model, Dim: rep.Dim}
		}
	}

	var poiReplica *replica.POI
	if n.roles.API || n.hasPool("alert") {
		r, err := replica.NewPOI(model, n.store, n.js, n.log)
		if err != nil {
			return err
		}
		if err := r.Start(ctx); err != nil {
			return err
		}
		poiReplica = r
		n.closers = append(n.closers, r.Close)
	}

	p := n.cfg.Pipeline
	addPool := func(stage, consumer, stream string, concurrency int, h pool.Handler) {
		pl := pool.New(pool.Config{Stage: stage, Stream: stream, Consumer: consumer, Concurrency: concurrency,
			MaxDeliver: p.MaxDeliver, DrainTimeout: n.cfg.ShutdownTimeout / 2, RetryFor: p.RetryFor, FetchWait: p.FetchWait}, n.js, h, n.metrics, n.log)
		n.actors = append(n.actors, actor{stage, pl.Run})
	}
	if n.hasPool("index") {
		pt := n.cfg.Partitions
		ix := index.New(index.Config{
			Model: model.Name, Silence: p.TrackSilence, SampleInterval: p.SampleInterval, MaxSamples: p.MaxSamplesPerTrack,
			Retention: p.Unmatched(), MinIoU: p.Tracker.MinIoU, Continuity: n.cfg.Face.MatchThreshold, BetterView: p.Tracker.BetterView, LastFrameEvery: p.Tracker.LastFrameEvery,
			DetectConcurrency: pt.DetectConcurrency, Partitions: pt.Count, IdleTTL: n.cfg.Cameras.IdleTTL,
		}, n.js, n.store, embedClient, detectClient, n.metrics, n.log)
		g := partition.New(partition.Config{
			Stage: "index", Stream: streams.Ingest, Consumer: streams.IndexConsumer, Partitions: pt.Count,
			Batch: pt.Batch, FetchWait: pt.FetchWait, Heartbeat: pt.Heartbeat, AckWait: pt.AckWait, Settle: pt.PinnedTTL,
			MaxDeliver: p.MaxDeliver, RetryFor: p.RetryFor,
		}, n.js, ix, n.metrics, n.log)
		n.partitions = g
		n.actors = append(n.actors, actor{"index", g.Run})
		n.actors = append(n.actors, actor{"index-ticker", func(ctx context.Context) error { return ix.RunTicker(ctx, streams.IndexConsumer) }})
		addPool("frames", streams.ConsumerFrames, streams.Ingest, p.FramesConcurrency, detect.New(n.store).HandleImage)
		z := zones.New(n.store, p.Retention, n.metrics, n.log)
		addPool("zones", streams.ConsumerZones, streams.Ingest, 1, z.Handle)
	}
	if n.hasPool("alert") {
		var pub alert.Publisher
		if n.mqtt != nil {
			pub = n.mqtt
		}
		a := alert.New(alert.Config{Model: model.Name, MatchThreshold: n.cfg.Face.MatchThreshold, Cooldown: p.AlertCooldown, Retention: p.Retention, NegativeMargin: n.cfg.Review.NegativeMargin},
			poiReplica.Index(), n.store, n.js, pub, n.metrics, n.log)
		addPool("alert", streams.ConsumerAlert, streams.Sightings, p.AlertConcurrency, a.Handle)
	}
	if n.roles.Bridge {
		bc := bridge.DefaultConfig()
		bc.QueueSize, bc.PublishTimeout = n.cfg.Bridge.QueueSize, n.cfg.Bridge.PublishTimeout
		bc.MaxClockSkew = p.MaxClockSkew
		bc.Cameras = CameraGate(n.cfg)
		bc.SeenTTL = n.cfg.Cameras.IdleTTL
		b := bridge.New(bc, n.mqtt, n.js, n.store, n.metrics, n.log)
		if err := b.Subscribe(ctx); err != nil {
			return err
		}
		n.actors = append(n.actors, actor{"bridge", b.Run})
	}
	if n.cfg.PprofAddr != "" {
		if err := n.serveProfiles(); err != nil {
			return err
		}
	}
	if n.cfg.MetricsAddr != "" {
		if err := n.serveOps(); err != nil {
			return err
		}
	}
	if n.roles.API {
		det, err := replica.NewDetections(replica.DetectionConfig{
			// One build thread: compaction runs beside inference.
			Index: vectorindex.DetectionConfig{Model: model, SegmentDuration: n.cfg.Index.SegmentDuration, HNSWMinVectors: n.cfg.Index.HNSWMinVectors,
				MergeMaxVectors: n.cfg.Index.MergeMaxVectors, BuildThreads: 1,
				HNSW: faiss.HNSWParams{EfSearch: n.cfg.Index.HNSWEfSearch}},
			Dir: filepath.Join(n.cfg.DataDir, "index", "detections"), Retention: p.Unmatched(), SnapshotEvery: n.cfg.Index.SnapshotEvery,
		}, n.js, n.log)
		if err != nil {
			return err
		}
		n.closers = append(n.closers, det.Close)
		n.actors = append(n.actors, actor{"detection-replica", det.Run})
		ob := outbox.New(n.store, n.js, n.log)
		purger := erasure.NewPurger(ErasureConfig(n.cfg), n.store, n.js, poiReplica, n.log)
		relay := outbox.NewRelay(ob, n.cfg.Outbox.RelayInterval, purger.Purge)
		n.actors = append(n.actors, actor{"outbox-relay", relay.Run})
		n.api = api.New(api.Deps{
			Config:        n.cfg,
			Store:         n.store,
			NATS:          n.nc,
			JS:            n.js,
			Embed:         embedClient,
			POI:           poiReplica,
			Detections:    det,
			Outbox:        ob,
			Erase:         purger,
			Metrics:       n.metrics,
			MQTTConnected: n.mqttConnected,
			VectorCount:   func() int { return poiReplica.Index().Count() + det.Index().Count() },
			Log:           n.log.With("component", "api"),
		})
		n.actors = append(n.actors, actor{"poi-expiry", n.api.RunExpiry})
		if err := n.api.Listen(); err != nil {
			return fmt.Errorf("api.addr: %w", err)
		}
		if !n.cfg.Auth.Enabled {
			n.log.Warn("access control is OFF (auth.enabled: false): anyone who reaches the API is an admin", "addr", n.api.Addr())
		}
		if err := n.api.Bootstrap(ctx); err != nil {
			// Redis down at start: keep trying, as the rest of the
			// process does.
			n.log.Warn("auth bootstrap deferred", "error", err)
			n.actors = append(n.actors, actor{"auth-bootstrap", n.api.RetryBootstrap})
		}
	}
	return nil
}
