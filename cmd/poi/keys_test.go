package main

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"poi/internal/testenv"
)

// poiCLI runs `poi args...` as a separate process against p's Redis and
// NATS (the environment p was started with) and returns its exit code,
// stdout and stderr.
func poiCLI(t *testing.T, p *proc, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(p.cmd.Path, args...)
	cmd.Env = p.cmd.Env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("poi %v: %v", args, err)
		}
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// callWith sends one request with key as the bearer and returns the status.
func callWith(t *testing.T, method, url, key string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestKeysCommandCreatesListsAndRevokesKeysTheAPIHonours: the way back in
// when admin keys are lost. A key made by `poi keys create` works against
// the running API with exactly its role, `poi keys list` shows it without
// its secret, and after `poi keys revoke` the API refuses it.
func TestKeysCommandCreatesListsAndRevokesKeysTheAPIHonours(t *testing.T) {
	redis := testenv.StartRedis(t)
	p := startPoi(t, redis.URL(), []string{"POI_AUTH_ENABLED=true"}, "run")
	waitStatus(t, p, 90*time.Second, "the service running", func(code int, s status) bool { return code == http.StatusOK })

	if code, _, stderr := poiCLI(t, p, "keys", "create", "--role", "wizard", "--name", "x"); code != 2 || !strings.Contains(stderr, "--role") {
		t.Fatalf("bad role: exit %d, stderr %q; want 2 naming --role", code, stderr)
	}
	code, stdout, stderr := poiCLI(t, p, "keys", "create", "--role", "viewer", "--name", "kiosk")
	if code != 0 {
		t.Fatalf("keys create: exit %d: %s", code, stderr)
	}
	key := strings.TrimSpace(stdout)
	if !strings.HasPrefix(key, "poi_") || strings.Contains(stderr, key) {
		t.Fatalf("keys create printed %q on stdout (stderr %q): want the key on stdout alone", stdout, stderr)
	}
	if got := callWith(t, http.MethodGet, p.api+"/api/v1/poi", key); got != http.StatusOK {
		t.Fatalf("viewer key on GET /poi: %d, want 200", got)
	}
	if got := callWith(t, http.MethodDelete, p.api+"/api/v1/alerts", key); got != http.StatusForbidden {
		t.Fatalf("viewer key on DELETE /alerts: %d, want 403", got)
	}
	if code, _, _ := poiCLI(t, p, "keys", "create", "--role", "viewer", "--name", "kiosk"); code != 1 {
		t.Fatalf("a second key named kiosk: exit %d, want 1", code)
	}

	code, list, stderr := poiCLI(t, p, "keys", "list")
	if code != 0 || !strings.Contains(list, "kiosk") || !strings.Contains(list, "viewer") || strings.Contains(list, key) {
		t.Fatalf("keys list: exit %d, %q (%s): want kiosk as viewer, without its secret", code, list, stderr)
	}

	if code, _, stderr := poiCLI(t, p, "keys", "revoke", "kiosk"); code != 0 {
		t.Fatalf("keys revoke: exit %d: %s", code, stderr)
	}
	if got := callWith(t, http.MethodGet, p.api+"/api/v1/poi", key); got != http.StatusUnauthorized {
		t.Fatalf("revoked key on GET /poi: %d, want 401", got)
	}
	// The log is read once the process is gone, when nothing writes it.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if strings.Contains(p.stderr.String(), key) {
		t.Fatal("the service logged the key")
	}
}

// TestEraseCommandRefusesBadIdsAndReportsUnknownPOIs: `poi erase` checks
// its argument before touching anything and says when there is nothing to
// erase; --verify of an id never enrolled finds nothing left.
func TestEraseCommandRefusesBadIdsAndReportsUnknownPOIs(t *testing.T) {
	redis := testenv.StartRedis(t)
	p := startPoi(t, redis.URL(), nil, "run")
	waitStatus(t, p, 90*time.Second, "the service running", func(code int, s status) bool { return code == http.StatusOK })

	if code, _, stderr := poiCLI(t, p, "erase", "not-an-id"); code != 2 || !strings.Contains(stderr, "usage") {
		t.Fatalf("bad id: exit %d, %q; want 2 with the usage", code, stderr)
	}
	const unknown = "poi-0123456789abcdef"
	if code, _, stderr := poiCLI(t, p, "erase", unknown); code != 1 || !strings.Contains(stderr, "no POI") {
		t.Fatalf("unknown POI: exit %d, %q; want 1 saying there is no such POI", code, stderr)
	}
	if code, stdout, stderr := poiCLI(t, p, "erase", "--verify", unknown); code != 0 {
		t.Fatalf("verify of a POI never enrolled: exit %d, %s %s; want 0", code, stdout, stderr)
	}
}
