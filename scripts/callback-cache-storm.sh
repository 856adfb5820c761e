#!/usr/bin/env bash
# A reconnect storm against an on_play callback, with and without cached decisions
# (docs/hooks.md, "Cached decisions"): how many callbacks the auth endpoint gets, and the p99
# from connecting to the first media packet.
#
# Usage: scripts/callback-cache-storm.sh [--players K] [--delay-ms MS] [--runs N]
#
# The endpoint is a Node.js server that answers every request after MS ms (default 50): with
# `Cache-Control: max-age=60` on /cached, with no such header on /plain. Per run and mode, a
# fresh ringcast (release build, 2 shards) gets two storms of K players (default 2000) of one
# published stream from `ringcast-load connect --then play --publish`: the first storm is the
# clients arriving, the second the same clients reconnecting (the same source addresses and
# stream, so the same cache keys). Modes alternate (cached, plain, cached, ...) so machine
# load hits both alike; the table shows each run. Run it under `flock /work/measure.lock` on a
# shared machine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

players=2000
delay_ms=50
runs=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --players) players=$2; shift 2 ;;
        --delay-ms) delay_ms=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h | --help) print_usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

server=$root/target/release/ringcast
load=$root/target/release/ringcast-load
[[ -x $server && -x $load ]] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v node >/dev/null || { echo "needs node" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

hook_port=$(free_port)
cat >"$work/endpoint.js" <<'EOF'
// Answers after DELAY ms; counts requests per path; GET /count?path=/x reads and resets.
const http = require("http");
const delay = Number(process.env.DELAY);
const counts = {};
const server = http.createServer((req, res) => {
    const path = req.url.split("?")[0];
    if (req.method === "GET" && path === "/count") {
        const which = new URL(req.url, "http://x").searchParams.get("path");
        const n = counts[which] || 0;
        counts[which] = 0;
        res.end(String(n));
        return;
    }
    counts[path] = (counts[path] || 0) + 1;
    req.resume();
    req.on("end", () => setTimeout(() => {
        const headers = path === "/cached" ? { "Cache-Control": "max-age=60" } : {};
        res.writeHead(200, headers);
        res.end();
    }, delay));
});
server.keepAliveTimeout = 60000;
server.maxConnections = 16000;
server.listen(Number(process.env.PORT), "127.0.0.1");
EOF
PORT=$hook_port DELAY=$delay_ms node "$work/endpoint.js" &
pids+=($!)
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$hook_port/count?path=/none" >/dev/null && break
    sleep 0.1
done

callbacks() { curl -sf "http://127.0.0.1:$hook_port/count?path=$1"; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d' + ''.join('[%r]' % k for k in sys.argv[2].split('.'))))" "$1" "$2"; }

# One run of `mode` (cached or plain): prints "storm1_callbacks storm1_p99 storm2_callbacks storm2_p99".
run() {
    local mode=$1 run=$2 rtmp_port api_port line=""
    rtmp_port=$(free_port)
    api_port=$(free_port)
    cat >"$work/$mode.toml" <<EOF
rtmp_listen = "127.0.0.1:$rtmp_port"
http_listen = "127.0.0.1:0"
rtsp_listen = "127.0.0.1:0"
api_listen = "127.0.0.1:$api_port"
shards = 2
log_level = "warn"
[notify]
on_play = "http://127.0.0.1:$hook_port/$mode"
EOF
    "$server" --config "$work/$mode.toml" 2>"$work/$mode-$run.log" &
    local pid=$!
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null && break
        sleep 0.1
    done
    for storm in 1 2; do
        "$load" --json-out "$work/$mode-$run-$storm.json" connect -k "$players" --then play --publish \
            --url "rtmp://127.0.0.1:$rtmp_port/live/storm" --server-pid "$pid" >/dev/null
        line+="$(callbacks "/$mode") $(json "$work/$mode-$run-$storm.json" connect.first_media.p99_ms) "
        line+="$(json "$work/$mode-$run-$storm.json" connect.completed) "
    done
    local metrics
    metrics=$(curl -sf "http://127.0.0.1:$api_port/metrics")
    line+="$(awk '$1 == "ringcast_callback_cache_hits_total" { print $2 }' <<<"$metrics")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$line"
}

echo "load: $(uptime)"
printf '%-7s %-4s | %-28s | %-28s | %s\n' mode run "storm 1: callbacks p99 done" "storm 2: callbacks p99 done" "cache hits"
for run_number in $(seq 1 "$runs"); do
    for mode in cached plain; do
        read -r c1 p1 d1 c2 p2 d2 hits < <(run "$mode" "$run_number")
        printf '%-7s %-4s | %9s %9s ms %6s | %9s %9s ms %6s | %s\n' \
            "$mode" "$run_number" "$c1" "$p1" "$d1" "$c2" "$p2" "$d2" "$hits"
    done
done
echo "load: $(uptime)"
