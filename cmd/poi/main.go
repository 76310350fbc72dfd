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
	"time"

	"poi/internal/camsim"
	"poi/internal/config"
	"poi/internal/eval"
	"poi/internal/mqttclient"
	"poi/internal/node"
)

const usage = `usage: poi <command> [flags]

commands:
  run      everything in one process (embedded NATS and MQTT unless URLs are set;
           --pools narrows the worker pools it runs)
  bridge   MQTT -> JetStream bridge only
  worker   worker pools only (--pools detect,embed,index,alert)
  api      REST API only
  camsim   publish a folder of JPEGs as a camera over MQTT
           (--camera ID --dir DIR --glob '*.jpg' --fps 2 --format json|raw|scenescape --count N --once)
  bench    load a deployment and measure it: poi bench scenescape|frames [--rate N --cameras N
           --fps F --step --duration D --metrics URLS ...] (poi bench MODE --help)
  keys     API keys: poi keys create --role viewer|operator|admin --name NAME [--expires-in 720h],
           poi keys list, poi keys revoke NAME_OR_ID (works on Redis directly; audited)
  erase    erase a POI everywhere, or finish an interrupted erasure: erase POI_ID;
           prove nothing names it or holds its vectors: erase --verify POI_ID
  eval     TAR/FAR of the face engine on labelled photos DIR/{identity}/*.jpg
           (eval DIR [--split] [--seed N] [--json]; docs/eval.md)

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
	if cmd == "eval" {
		return eval.Main(rest, os.Environ(), os.Stdout, stderr)
	}
	if cmd == "erase" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runErase(ctx, os.Getenv("POI_CONFIG"), rest, os.Stdout, stderr)
	}
	mode := ""
	if cmd == "bench" || cmd == "keys" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "usage: poi %s\n", map[string]string{"bench": "bench scenescape|frames [flags]", "keys": keysUsage}[cmd])
			return 2
		}
		mode, rest = rest[0], rest[1:]
	}
	fs := flag.NewFlagSet("poi "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", os.Getenv("POI_CONFIG"), "YAML configuration file")
	pools := fs.String("pools", "detect,embed,index,alert", "worker pools to run (worker command)")
	var sim camsim.Options
	var simDir, simGlob string
	var simOnce bool
	if cmd == "camsim" {
		fs.StringVar(&sim.CameraID, "camera", "sim-cam-1", "camera id")
		fs.StringVar(&simDir, "dir", ".assets/photos", "folder of JPEG frames")
		fs.StringVar(&simGlob, "glob", "*.jpg", "file pattern inside --dir")
		fs.Float64Var(&sim.FPS, "fps", 2, "frames per second")
		fs.StringVar(&sim.Format, "format", "json", "json, raw or scenescape")
		fs.IntVar(&sim.Count, "count", 0, "stop after this many frames (0: no limit)")
		fs.BoolVar(&simOnce, "once", false, "publish the files once instead of looping")
	}
	var bench benchFlags
	if cmd == "bench" {
		addBenchFlags(fs, &bench)
	}
	var keys keysFlags
	if cmd == "keys" {
		addKeysFlags(fs, &keys)
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}

	roles, ok := commandRoles(cmd, splitList(*pools))
	if !ok {
		fmt.Fprintf(stderr, "poi: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "poi: %v\n", err)
		return 2
	}
	log := cfg.Log.Logger(stderr).With("role", cmd)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd == "camsim" {
		return runCamsim(ctx, cfg, sim, simDir, simGlob, !simOnce, log, stderr)
	}
	if cmd == "bench" {
		return runBench(ctx, cfg, mode, bench, log, os.Stdout, stderr)
	}
	if cmd == "keys" {
		return runKeys(ctx, cfg, mode, fs.Args(), keys, os.Stdout, stderr)
	}
	n, err := node.New(cfg, roles, log)
	if err != nil {
		fmt.Fprintf(stderr, "poi: %v\n", err)
		return 2
	}
	if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("exit", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func runCamsim(ctx context.Context, cfg config.Config, o camsim.Options, dir, glob string, loop bool, log *slog.Logger, stderr io.Writer) int {
	files, err := camsim.Glob(dir, glob)
	if err != nil {
		fmt.Fprintf(stderr, "poi camsim: %v\n", err)
		return 2
	}
	o.Files, o.Loop = files, loop
	tc, err := cfg.MQTT.TLS.Config()
	if err != nil {
		fmt.Fprintf(stderr, "poi camsim: mqtt.tls: %v\n", err)
		return 2
	}
	cl, err := mqttclient.Connect(ctx, mqttclient.Options{
		URL: cfg.MQTT.BrokerURL(), Username: cfg.MQTT.Username, Password: cfg.MQTT.Password,
		ConnectTimeout: cfg.MQTT.ConnectTimeout, TLS: tc,
	}, log)
	if err != nil {
		log.Warn("camsim: broker not reachable yet", "error", err)
	}
	defer cl.Close(time.Second)
	log.Info("camsim publishing", "camera", o.CameraID, "frames", len(files), "fps", o.FPS, "format", o.Format)
	n, err := camsim.Run(ctx, o, cl)
	if err != nil {
		log.Error("camsim", "error", err, "sent", n)
		return 1
	}
	log.Info("camsim done", "sent", n)
	return 0
}

// commandRoles maps a command to the roles its process runs; ok is false
// for a command poi does not have. Tools (camsim, bench, keys) run no roles.
func commandRoles(cmd string, pools []string) (roles node.Roles, ok bool) {
	switch cmd {
	case "run":
		return node.Roles{Embedded: true, Bridge: true, API: true, Pools: pools}, true
	case "bridge":
		return node.Roles{Bridge: true}, true
	case "worker":
		return node.Roles{Pools: pools}, true
	case "api":
		return node.Roles{API: true}, true
	case "camsim", "bench", "keys":
		return node.Roles{}, true
	}
	return node.Roles{}, false
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
