#!/usr/bin/env bash
# What the webhook outbox costs: a connect storm (K players connect and play, one publisher)
# with a webhook on every event, the outbox on and off, interleaved (off, on, off, on, ...).
#
# Usage: scripts/bench-outbox.sh [--storm K] [--runs N]
#
# Per run it reports the storm's p99 to first media, the server's CPU seconds over the storm and
# the drain, the deliveries made, how long after the storm the last one went (the drain), and
# the most bytes the outbox held after the storm. The receiver
# is nginx answering 204, so its CPU is nobody's. Run it under `flock /work/measure.lock` on a
# shared machine, and compare the modes within one run of this script only.
set -euo pipefail

storm=2000
runs=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --storm) storm=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v nginx >/dev/null || { echo "bench-outbox: needs nginx" >&2; exit 1; }
(cd "$root" && cargo build --release --bins --quiet)
load=$root/target/release/ringcast-load
server=$root/target/release/ringcast
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
hz=$(getconf CLK_TCK)

work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-outbox.XXXXXX")
pids=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

hook_port=$(free_port)
mkdir -p "$work/hook"
cat >"$work/hook/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/hook/nginx.pid;
error_log $work/hook/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/hook;
    server { listen 127.0.0.1:$hook_port backlog=4096; location / { return 204; } }
}
CONF
nginx -p "$work/hook" -c "$work/hook/nginx.conf" 2>"$work/hook/stderr" &
pids+=($!)
sleep 0.5

metric() { curl -s "http://127.0.0.1:$api_port/metrics" | awk -v m="$1" '$1 ~ "^"m"([{]|$)" { s += $2 } END { print s + 0 }'; }

printf '%-4s %-7s %14s %12s %11s %10s %12s\n' run outbox p99_media_ms server_cpu_s delivered drain_s outbox_bytes
for run in $(seq 1 "$runs"); do
    for mode in false true; do
        rtmp_port=$(free_port)
        api_port=$(free_port)
        state="$work/state-$run-$mode"
        cat >"$work/ringcast-$run-$mode.toml" <<CONF
state_dir = "$state"
outbox = $mode
[[webhook]]
url = "http://127.0.0.1:$hook_port/events"
CONF
        "$server" --config "$work/ringcast-$run-$mode.toml" --rtmp-listen "127.0.0.1:$rtmp_port" \
            --api-listen "127.0.0.1:$api_port" --http-listen 127.0.0.1:0 --rtsp-listen 127.0.0.1:0 \
            --log-level warn 2>"$work/server-$run-$mode.log" &
        server_pid=$!
        pids+=("$server_pid")
        for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null && break; sleep 0.1; done
        before=$(cpu_ticks "$server_pid")
        "$load" --url "rtmp://127.0.0.1:$rtmp_port/live/load" --server-pid "$server_pid" \
            --json-out "$work/load-$run-$mode.json" connect -k "$storm" --then play --publish \
            >"$work/load-$run-$mode.txt" 2>&1 || true
        # The drain: until nothing is queued or in flight (and the outbox is empty).
        start=$(date +%s.%N)
        peak=0
        while true; do
            pending=$(( $(metric ringcast_sink_queued) + $(metric ringcast_sink_in_flight) + $(metric ringcast_outbox_entries) ))
            bytes=$(metric ringcast_outbox_bytes)
            (( bytes > peak )) && peak=$bytes
            [[ $pending -eq 0 ]] && break
            sleep 0.05
        done
        drain=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
        after=$(cpu_ticks "$server_pid")
        delivered=$(metric ringcast_sink_delivered_total)
        p99=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["connect"]["first_media"]["p99_ms"])' "$work/load-$run-$mode.json" 2>/dev/null || echo "?")
        cpu=$(awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN { printf "%.2f", (a - b) / hz }')
        printf '%-4s %-7s %14s %12s %11s %10s %12s\n' "$run" "$mode" "$p99" "$cpu" "$delivered" "$drain" "$peak"
        kill -TERM "$server_pid"
        wait "$server_pid" 2>/dev/null || true
    done
done
