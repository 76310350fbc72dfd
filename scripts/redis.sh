#!/usr/bin/env bash
# ensure: start a local redis-server on 127.0.0.1:$PORT when none answers,
# with its files under the data dir; prints "started" if it started one.
# stop: stop the server this script started (by the pid file it wrote).
set -euo pipefail
port=${POI_REDIS_PORT:-6379}
dir=${POI_DATA_DIR:-./data}/redis
pidfile=$dir/redis.pid
case "${1:-}" in
  ensure)
    if redis-cli -p "$port" ping >/dev/null 2>&1; then exit 0; fi
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$(cd "$dir" && pwd)" \
      --daemonize yes --pidfile "$(cd "$dir" && pwd)/redis.pid" --logfile redis.log >/dev/null
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && { echo started; exit 0; }; sleep 0.1; done
    echo "redis-server did not answer on port $port" >&2; exit 1 ;;
  stop)
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile" ;;
  *) echo "usage: $0 ensure|stop" >&2; exit 2 ;;
esac
