package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/config"
	"poi/internal/erasure"
	"poi/internal/node"
	"poi/internal/store"
)

// runErase is `poi erase [--verify] POI_ID`: without --verify it runs (or
// finishes) the POI's purge, as DELETE /api/v1/poi/{id} does; with it, it
// proves that nothing names the POI or holds its vectors (exit 1 with the
// list of what remains otherwise).
func runErase(ctx context.Context, cfgPath string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("poi erase", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", cfgPath, "YAML configuration file")
	verify := fs.Bool("verify", false, "prove that nothing names the POI or holds its vectors, instead of erasing it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || !store.IsPOIID(fs.Arg(0)) {
		fmt.Fprintf(stderr, "usage: poi erase [--verify] POI_ID (poi- and 16 hex digits)\n")
		return 2
	}
	id := fs.Arg(0)
	cfg, err := config.Load(fs.Lookup("config").Value.String(), os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "poi: %v\n", err)
		return 2
	}
	log := cfg.Log.Logger(stderr).With("role", "erase")
	st, js, closeAll, err := connectState(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "poi erase: %v\n", err)
		return 1
	}
	defer closeAll()
	if *verify {
		rep, err := erasure.Verify(ctx, erasure.VerifyDeps{Store: st, JS: js, DataDir: cfg.DataDir, ReplicaWait: cfg.Erasure.ReplicaWait}, id)
		fmt.Fprint(stdout, rep)
		if err != nil {
			fmt.Fprintf(stderr, "poi erase --verify: incomplete: %v\n", err)
			return 1
		}
		if !rep.OK() {
			return 1
		}
		return 0
	}
	found, err := erasure.NewPurger(node.ErasureConfig(cfg), st, js, nil, log).Purge(ctx, id)
	if err != nil {
		fmt.Fprintf(stderr, "poi erase: %v (run it again to finish the purge)\n", err)
		return 1
	}
	if !found {
		fmt.Fprintf(stderr, "poi erase: no POI %s (never enrolled, or erased longer ago than erasure.tombstone_ttl)\n", id)
		return 1
	}
	fmt.Fprintf(stdout, "%s: erased\n", id)
	return 0
}

// connectState connects to the service's Redis and NATS as configured.
func connectState(cfg config.Config) (*store.Store, jetstream.JetStream, func(), error) {
	st, err := store.Open(cfg.Redis.URL, cfg.Redis.KeyPrefix)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("redis.url: %w", err)
	}
	nc, err := nats.Connect(cfg.NATS.ClientURL(), nats.Name("poi-erase"), nats.Timeout(cfg.NATS.ConnectTimeout))
	if err != nil {
		st.Close()
		return nil, nil, nil, fmt.Errorf("nats %s: %w", cfg.NATS.ClientURL(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		st.Close()
		return nil, nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return st, js, func() { nc.Close(); _ = st.Close() }, nil
}
