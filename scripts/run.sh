#!/usr/bin/env bash
# Runs the whole service in the foreground with its embedded defaults, plus
# a local Redis when none answers. Ctrl-C stops everything this started.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOWORK=off # build the service with its own go.mod (tools/ is a separate module)
started=$(bash scripts/redis.sh ensure)
cleanup() {
  [ -n "${camsim:-}" ] && kill "$camsim" 2>/dev/null || true
  [ "$started" = started ] && bash scripts/redis.sh stop
}
trap cleanup EXIT
go build -o bin/poi ./cmd/poi
# One simulated camera so that tracks form at once.
(sleep 5; exec ./bin/poi camsim --camera sim-cam-1 --dir .assets/photos --glob 'franck_*.jpg' --fps 2) &
camsim=$!
# The simulated camera is the one camera accepted, unless cameras are
# configured (a --config file or POI_CAMERAS_LIST).
case " $* " in
  *" --config"*) ;;
  *) sim='[{"id":"sim-cam-1","name":"Simulated camera"}]'
     export POI_CAMERAS_LIST="${POI_CAMERAS_LIST:-$sim}" ;;
esac
./bin/poi run "$@"
