#!/usr/bin/env bash
# An edge's fan-out against a local stream's, side by side in one run, and what one pull costs
# its origin. Every server is this tree's ringcast on loopback with one shard.
#
# Usage: scripts/bench-edge.sh [--players N] [--seconds S] [--rounds R]
#   defaults: 1000 players of one stream (2.2 Mbit/s video + 128 kbit/s audio), a steady
#   window of 10 s, 2 rounds (local, edge, local, edge)
#
# local: one ringcast; `ringcast-load publish` sends the stream to it, `ringcast-load play`
#   starts N players on it (ramped in at 200/s), waits 3 s after the last one, then measures a
#   steady window of S seconds: bytes the players read, the server's CPU over the same window.
# edge: an origin ringcast takes the publisher; an edge ringcast with
#   `[relay] origins = ["rtmp://127.0.0.1:<origin port>"]` takes the same N players and pulls
#   the stream once. The edge is measured as the local server is. The origin's CPU is sampled
#   from /proc for 10 s with the publisher alone (its baseline), then over the whole play run
#   (the pull starts with the first player and holds to the end): the difference per second is
#   what the pull costs the origin. The pull's bytes are the edge's /api/relays bytes_in.
#
# The players use the steady-state method of scripts/bench-vs-nginx.sh (ringcast-load
# --window). The publisher is a process of its own in both scenarios, so neither one's
# player process also carries the publisher. On a 2-core machine the load client and the
# servers share the CPUs: the figures that count are CPU seconds, not wall-clock rates.
#
# RINGCAST_BIN=PATH runs that server binary; SKIP_BUILD=1 builds nothing first; KEEP=1 keeps
# the work directory (logs, JSON reports).

set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

players=1000
seconds=10
rounds=2
while [[ $# -gt 0 ]]; do
    case $1 in
        --players) players=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h | --help) print_usage; exit 0 ;;
        *) echo "bench-edge: unknown option $1" >&2; exit 2 ;;
    esac
done

raise_open_files

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    echo "bench-edge: cargo build --release --bins" >&2
    (cd "$root" && cargo build --release --bins --quiet)
fi
load=$root/target/release/ringcast-load
ringcast_bin=${RINGCAST_BIN:-$root/target/release/ringcast}
hz=$(getconf CLK_TCK)

work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-edge.XXXXXX")
servers=()
publisher_pid=
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    [[ -n $publisher_pid ]] && stop_process "$publisher_pid" 2
    for pid in "${servers[@]}"; do stop_process "$pid" 2; done
    remove_work_dir "$work" "${KEEP:-0}" "kept $work"
}
trap cleanup EXIT

now() { date +%s.%N; }
json() { python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    d = d.get(key) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"; }

# Starts a one-shard ringcast named NAME (its log and config in $work/NAME.*), with the TOML
# given on stdin as its config; sets pid, rtmp_port and api_port.
start_ringcast() {
    local name=$1
    rtmp_port=$(free_port)
    api_port=$(free_port)
    cat >"$work/$name.toml"
    mkdir -p "$work/$name.state"
    "$ringcast_bin" --config "$work/$name.toml" --rtmp-listen "127.0.0.1:$rtmp_port" --shards 1 \
        --http-listen 127.0.0.1:0 --rtsp-listen 127.0.0.1:0 --api-listen "127.0.0.1:$api_port" \
        --state-dir "$work/$name.state" --log-level warn >"$work/$name.log" 2>&1 &
    pid=$!
    servers+=("$pid")
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$rtmp_port") 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench-edge: $name did not start:" >&2
    tail -n 3 "$work/$name.log" >&2
    return 1
}

stop_all() {
    [[ -n $publisher_pid ]] && stop_process "$publisher_pid" 2
    publisher_pid=
    for pid in "${servers[@]}"; do stop_process "$pid"; done
    servers=()
    sleep 0.5
}

# A publisher of live/bench at rtmp PORT, long enough for any run; it is stopped after.
start_publisher() {
    "$load" publish --url "rtmp://127.0.0.1:$1/live/bench" --duration 600s >"$work/publisher.txt" 2>&1 &
    publisher_pid=$!
    sleep 1
}

# N players of live/bench at rtmp PORT, measured against the server PID; the report goes to
# $work/KEY.json and its steady figures to result[KEY.*].
declare -A result
play_run() {
    local key=$1 port=$2 server=$3 file=$work/$1.json bytes
    "$load" play --url "rtmp://127.0.0.1:$port/live/bench" -n "$players" --window "$seconds" --threads 2 \
        --server-pid "$server" --json-out "$file" >"$work/$key.txt" 2>&1 || true
    bytes=$(json "$file" steady.bytes)
    result[$key.cpu]=$(json "$file" steady.server_cpu_s)
    result[$key.gbit]=$(awk -v b="${bytes:-0}" 'BEGIN { printf "%.2f", b * 8 / 1e9 }')
    result[$key.gbit_per_cpu]=$(json "$file" steady.gbit_per_server_cpu_s)
    local playing drops gone
    playing=$(json "$file" play.playing)
    drops=$(json "$file" play.with_drops)
    gone=$(json "$file" play.disconnected)
    result[$key.clean]=$((${playing:-0} - ${drops:-0} - ${gone:-0}))
}

# CPU seconds per wall second of PID from now until the caller's next origin_cpu_end.
origin_cpu_begin() { cpu0=$(cpu_ticks "$1") t0=$(now); }
origin_cpu_end() {
    local cpu1 t1
    cpu1=$(cpu_ticks "$1") t1=$(now)
    awk -v a="$cpu1" -v b="$cpu0" -v t="$t1" -v s="$t0" -v hz="$hz" 'BEGIN { printf "%.4f", (a - b) / hz / (t - s) }'
}

edge_toml() {
    printf '[relay]\norigins = ["rtmp://127.0.0.1:%d"]\n' "$1"
}

for round in $(seq 1 "$rounds"); do
    echo "bench-edge: round $round: local" >&2
    start_ringcast local </dev/null
    start_publisher "$rtmp_port"
    play_run "local.$round" "$rtmp_port" "$pid"
    stop_all

    echo "bench-edge: round $round: edge" >&2
    start_ringcast origin </dev/null
    origin_pid=$pid origin_port=$rtmp_port
    # Not a pipe: start_ringcast must run in this shell to set pid and servers.
    start_ringcast edge < <(edge_toml "$origin_port")
    edge_pid=$pid edge_port=$rtmp_port edge_api=$api_port
    start_publisher "$origin_port"
    # 10 s: the baseline is a few clock ticks, so a shorter one is mostly rounding.
    origin_cpu_begin "$origin_pid"
    sleep 10
    result[edge.$round.origin_base]=$(origin_cpu_end "$origin_pid")
    origin_cpu_begin "$origin_pid"
    pull_t0=$(now)
    play_run "edge.$round" "$edge_port" "$edge_pid"
    result[edge.$round.origin_busy]=$(origin_cpu_end "$origin_pid")
    # The pull's bytes so far, over the time since the first player (the pull's lifetime,
    # within the connect time).
    relays=$(curl -fsS "http://127.0.0.1:$edge_api/api/relays" || echo '{"relays": []}')
    read -r "result[edge.$round.pull_mbit]" "result[edge.$round.pulls]" < <(python3 -c 'import json, sys
pulls = [r for r in json.loads(sys.argv[1])["relays"] if r["direction"] == "pull"]
print("%.2f %d" % (sum(r["bytes_in"] for r in pulls) * 8 / 1e6 / float(sys.argv[2]), len(pulls)))' \
        "$relays" "$(awk -v a="$(now)" -v b="$pull_t0" 'BEGIN { print a - b }')")
    stop_all
done

echo
echo "== edge vs local: $players RTMP players of one stream (2.2 Mbit/s video + 128 kbit/s audio), one shard each,"
echo "   steady window ${seconds}s, $(nproc) CPUs shared with the load client; load average: $(cut -d' ' -f1-3 /proc/loadavg) =="
printf '%-6s %-6s %12s %12s %12s %8s\n' round server "CPU-s" "Gbit" "Gbit/CPU-s" held
ratios=()
for round in $(seq 1 "$rounds"); do
    for kind in local edge; do
        k=$kind.$round
        printf '%-6s %-6s %12s %12s %12s %8s\n' "$round" "$kind" "${result[$k.cpu]}" "${result[$k.gbit]}" "${result[$k.gbit_per_cpu]}" "${result[$k.clean]}"
    done
    ratios+=("$(awk -v a="${result[edge.$round.gbit_per_cpu]}" -v b="${result[local.$round.gbit_per_cpu]}" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }')")
done
echo "edge/local Gbit per CPU-second, per round: ${ratios[*]}"
echo
echo "== the origin, per edge (one pull) =="
printf '%-6s %22s %22s %18s %14s %6s\n' round "CPU/s publisher only" "CPU/s with the pull" "pull's CPU/s" "pull Mbit/s" pulls
for round in $(seq 1 "$rounds"); do
    k=edge.$round
    printf '%-6s %22s %22s %18s %14s %6s\n' "$round" "${result[$k.origin_base]}" "${result[$k.origin_busy]}" \
        "$(awk -v a="${result[$k.origin_busy]}" -v b="${result[$k.origin_base]}" 'BEGIN { printf "%.4f", a - b }')" \
        "${result[$k.pull_mbit]}" "${result[$k.pulls]}"
done
echo "(CPU/s: the origin's CPU seconds per wall second; the pull's = with the pull less publisher only)"
