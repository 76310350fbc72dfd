// Command poi is the whole service in one binary: `poi run` starts everything
// in one process; `poi bridge`, `poi worker` and `poi api` run the same code
// as separate roles across machines.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"poi/internal/config"
	"poi/internal/node"
)

const usage = `usage: poi <command> [flags]

commands:
  run      everything in one process (embedded NATS and MQTT unless URLs are set)
  bridge   MQTT -> JetStream bridge only
  worker   worker pools only (--pools detect,embed,index,alert)
  api      REST API only

flags (every command):
  --config FILE   YAML file over the compiled-in defaults (also $POI_CONFIG)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("poi "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", os.Getenv("POI_CONFIG"), "YAML configuration file")
	pools := fs.String("pools", "detect,embed,index,alert", "worker pools to run (worker command)")
	if err := fs.Parse(rest); err != nil {
		return 2
	}

	var roles node.Roles
	all := splitList(*pools)
	switch cmd {
	case "run":
		roles = node.Roles{Embedded: true, Bridge: true, API: true, Pools: []string{"detect", "embed", "index", "alert"}}
	case "bridge":
		roles = node.Roles{Bridge: true}
	case "worker":
		roles = node.Roles{Pools: all}
	case "api":
		roles = node.Roles{API: true}
	default:
		fmt.Fprintf(stderr, "poi: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "poi: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr).With("role", cmd)
	n, err := node.New(cfg, roles, log)
	if err != nil {
		fmt.Fprintf(stderr, "poi: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("exit", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
