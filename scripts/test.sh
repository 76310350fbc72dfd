#!/usr/bin/env bash
# The whole test suite. Tests start their own real servers (redis-server
# processes on free ports, embedded nats-server and MQTT broker) so packages
# run in parallel without sharing state.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOWORK=off # build the service with its own go.mod (tools/ is a separate module)
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.assets/*'))
[ -z "$unformatted" ] || { echo "gofmt needed: $unformatted" >&2; exit 1; }
go vet ./...
# The service module is tidy and holds only what the service imports.
go mod tidy -diff
(cd tools && go mod tidy -diff)
if go mod graph | grep -E 'go-task|aws-sdk|cloud\.google|bubbletea' >/dev/null; then
  echo "the service module graph holds development tools" >&2; exit 1
fi
# The operator console's browser tests save a screenshot of each final
# state; list them whatever the outcome, for a person to look at.
shots=${POI_TEST_OUTPUT:-test-output}
trap 'ls -1 "$shots"/*.png 2>/dev/null | sed "s/^/screenshot: /" >&2 || true' EXIT
go test -race -count=1 -timeout 20m ./...
# Every benchmark once, at a size that only proves it still runs (none of
# them may rot between the runs recorded in docs/BENCHMARKS.md).
POI_BENCH_SMOKE=1 go test -count=1 -run '^$' -bench . -benchtime 1x -timeout 10m ./...
# Bounded fuzzing of every parser of untrusted input. The budget is a count
# of executions, not a duration: with a duration, Go 1.26's fuzzing
# coordinator can fail a clean run with "context deadline exceeded" at the
# deadline (go.dev/issue/75804, fixed in Go 1.27).
for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$target"/*_test.go | sed 's/func //'); do
    go test -run '^$' -fuzz "^$f\$" -fuzztime "${POI_FUZZTIME:-20000x}" "$target"
  done
done
