#!/usr/bin/env bash
# The whole test suite. Tests start their own real servers (redis-server
# processes on free ports, embedded nats-server and MQTT broker) so packages
# run in parallel without sharing state.
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.assets/*'))
[ -z "$unformatted" ] || { echo "gofmt needed: $unformatted" >&2; exit 1; }
go vet ./...
go test -race -count=1 -timeout 20m ./...
# Bounded fuzzing of every parser of untrusted input.
for target in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$target"/*_test.go | sed 's/func //'); do
    go test -run '^$' -fuzz "^$f\$" -fuzztime "${POI_FUZZTIME:-10s}" "$target"
  done
done
