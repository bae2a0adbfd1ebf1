#!/usr/bin/env bash
# Load test of the demo API on loopback with wrk: the same server, with and
# without the apiguard chain, in requests per second and p99 latency.
# Bounded: two runs of DURATION (default 10s) each. Needs wrk
# (apt-get install -y wrk). Run from the repository root or bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk" >&2; exit 1; }

out=$(mktemp)
go build -o "$out.bin" ./examples/demo
"$out.bin" -serve -loadtest -http -addr 127.0.0.1:0 > "$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out" "$out.bin"' EXIT
for _ in $(seq 100); do grep -q "listening\|demo API on" "$out" && break; sleep 0.1; done
base=$(sed -n 's/^apiguard demo API on //p' "$out")
token=$(grep -o "Bearer [A-Za-z0-9._-]*" "$out" | head -1 | cut -d' ' -f2)
[ -n "$base" ] && [ -n "$token" ] || { echo "demo did not start" >&2; cat "$out" >&2; exit 1; }

run() { # name, then wrk arguments
  local name=$1; shift
  local res; res=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  local rps p99 non2xx
  rps=$(echo "$res" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$res" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$res" | awk '/Non-2xx/ {print $5}')
  printf "| %-44s | %12s | %10s | %8s |\n" "$name" "$rps" "$p99" "${non2xx:-0}"
}
echo "| endpoint | requests/s | p99 latency | non-2xx |"
echo "| --- | ---: | ---: | ---: |"
run "GET /healthz (no chain)" "$base/healthz"
run "GET /v1/orders (telemetry, IP limit, auth, per-user limit)" -H "Authorization: Bearer $token" "$base/v1/orders"
