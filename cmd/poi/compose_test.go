package main

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"poi/internal/config"
	"poi/internal/node"
)

// TestComposeFileMatchesTheBinary keeps compose.yaml from rotting: every
// service built from this repository runs a real poi command with flags the
// command takes and pools that exist, and its environment is a valid
// configuration of this binary (an unknown POI_* key or a bad value fails
// Load, as it would fail the container). The topology is the one the
// cluster tests run.
func TestComposeFileMatchesTheBinary(t *testing.T) {
	raw, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	roles := map[string]int{}
	pools := map[string]int{}
	for name, svc := range f.Services {
		if svc.Image != "poi:local" {
			continue
		}
		if len(svc.Command) == 0 {
			t.Fatalf("service %s: no command", name)
		}
		cmd := svc.Command[0]
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("config", "", "")
		poolFlag := fs.String("pools", "detect,embed,index,alert", "")
		if err := fs.Parse(svc.Command[1:]); err != nil || fs.NArg() != 0 {
			t.Errorf("service %s: command %v: bad flags: %v %v", name, svc.Command, err, fs.Args())
			continue
		}
		r, ok := commandRoles(cmd, splitList(*poolFlag))
		if !ok || cmd == "camsim" || cmd == "bench" || cmd == "keys" {
			t.Errorf("service %s: %q is not a serving poi command", name, cmd)
			continue
		}
		var env []string
		for k, v := range svc.Environment {
			if !strings.HasPrefix(k, config.EnvPrefix) {
				t.Errorf("service %s: %s is not a POI_* setting", name, k)
			}
			env = append(env, k+"="+v)
		}
		cfg, err := config.Load("", env)
		if err != nil {
			t.Errorf("service %s: environment is no valid configuration: %v", name, err)
			continue
		}
		if _, err := node.New(cfg, r, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		if cfg.NATS.Replicas != 3 || len(strings.Split(cfg.NATS.URL, ",")) != 3 || !cfg.Redis.Sentinel() {
			t.Errorf("service %s: want 3 NATS URLs, 3 replicas and Sentinel, got %q %d %v", name, cfg.NATS.URL, cfg.NATS.Replicas, cfg.Redis.SentinelAddrs)
		}
		roles[cmd]++
		for _, p := range r.Pools {
			if cmd == "worker" {
				pools[p]++
			}
		}
	}
	// The cluster tests' topology: one bridge, two workers with every
	// pool, two API processes.
	if roles["bridge"] != 1 || roles["worker"] != 2 || roles["api"] != 2 || roles["run"] != 0 {
		t.Errorf("roles %v, want 1 bridge, 2 workers, 2 api", roles)
	}
	for _, p := range []string{"detect", "embed", "index", "alert"} {
		if pools[p] != 2 {
			t.Errorf("pool %s runs in %d workers, want 2", p, pools[p])
		}
	}
	for _, n := range []string{"nats1", "nats2", "nats3", "redis1", "redis2", "sentinel1", "sentinel2", "sentinel3", "mosquitto"} {
		if _, ok := f.Services[n]; !ok {
			t.Errorf("service %s missing", n)
		}
	}
}
