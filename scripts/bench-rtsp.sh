#!/usr/bin/env bash
# RTSP fan-out, side by side in one run: ringcast's RTSP (TCP interleaved) players, ringcast's
# RTMP players of the same stream, and GStreamer's RTSP server (gst-rtsp-server, shared media,
# scripts/gst-rtsp-relay.py) relaying that stream to the same number of RTSP players. Same
# machine, same load client (ringcast-load), same generated media (H.264 2.2 Mbit/s + AAC).
#
# Usage: scripts/bench-rtsp.sh [--players N] [--seconds S] [--runs R]
#   defaults: 1000 players, a steady window of 10 s, one run of each (R runs interleave them)
#
# Each run ramps the players in (200/s), waits 3 s, then measures a steady window of S seconds:
# bytes the players read and the server's CPU seconds over that window (/proc/PID/stat, every
# thread), hence Gbit delivered per server CPU-second, the figure compared. ringcast gets one
# shard; GStreamer's server is one process (its own threads). In the GStreamer run ringcast
# only feeds the relay (one RTSP player): its CPU is not counted, the relay's is.
#
# Run it under `flock /work/measure.lock` on a shared machine; on 2 cores the load client and
# the server share the CPUs, so only the CPU-second figures mean anything.

set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

players=1000
seconds=10
runs=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --players) players=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h | --help) print_usage; exit 0 ;;
        *) echo "bench-rtsp: unknown option $1" >&2; exit 2 ;;
    esac
done

raise_open_files
hz=$(getconf CLK_TCK)

# gst-rtsp-server's Python bindings are Debian's: a virtualenv's python3 has no gi.
python=/usr/bin/python3
if ! "$python" -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null; then
    echo "bench-rtsp: installing python3-gi and gir1.2-gst-rtsp-server-1.0" >&2
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad >&2
fi

echo "bench-rtsp: cargo build --release --bins" >&2
(cd "$root" && cargo build --release --bins --quiet)
load=$root/target/release/ringcast-load
ringcast=$root/target/release/ringcast

work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-bench-rtsp.XXXXXX")
pids=()
# shellcheck disable=SC2317 # invoked by the EXIT trap and between runs
stop_all() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
# shellcheck disable=SC2317
cleanup() {
    stop_all
    remove_work_dir "$work" "${KEEP:-0}" "kept $work"
}
trap cleanup EXIT

json() { "$python" -c 'import json, sys
d = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    d = d.get(key) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"; }

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench-rtsp: nothing listens on $1" >&2
    return 1
}

# Starts ringcast with one shard; sets rtmp_port, rtsp_port and ringcast_pid.
start_ringcast() {
    rtmp_port=$(free_port)
    rtsp_port=$(free_port)
    "$ringcast" --rtmp-listen "127.0.0.1:$rtmp_port" --rtsp-listen "127.0.0.1:$rtsp_port" --shards 1 \
        --http-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --log-level warn 2>>"$work/ringcast.log" &
    ringcast_pid=$!
    pids+=("$ringcast_pid")
    wait_port "$rtmp_port"
    wait_port "$rtsp_port"
}

declare -A result
# Plays NAME's players against server PID; stores its figures under result[NAME.*].
measure() {
    local name=$1 pid=$2 file=$work/$1.json
    shift 2
    "$load" play -n "$players" --window "$seconds" --threads 2 --server-pid "$pid" --json-out "$file" "$@" \
        >"$work/$name.txt" 2>&1 || true
    result[$name.cpu]=$(json "$file" steady.server_cpu_s)
    result[$name.gbit]=$(awk -v b="$(json "$file" steady.bytes)" 'BEGIN { printf "%.2f", b * 8 / 1e9 }')
    result[$name.gbit_per_cpu]=$(json "$file" steady.gbit_per_server_cpu_s)
    result[$name.playing]=$(json "$file" play.playing)
    echo "bench-rtsp: $name: ${result[$name.gbit_per_cpu]} Gbit per server CPU-second" >&2
}

for run in $(seq 1 "$runs"); do
    echo "bench-rtsp: run $run of $runs: $players players, steady window ${seconds}s" >&2

    start_ringcast
    measure "rtmp.$run" "$ringcast_pid" --publish --url "rtmp://127.0.0.1:$rtmp_port/live/bench"
    stop_all

    start_ringcast
    measure "rtsp.$run" "$ringcast_pid" --publish --url "rtsp://127.0.0.1:$rtsp_port/live/bench" \
        --publish-url "rtmp://127.0.0.1:$rtmp_port/live/bench"
    stop_all

    # GStreamer: ringcast only takes the stream in and hands it to the relay.
    start_ringcast
    "$load" publish --url "rtmp://127.0.0.1:$rtmp_port/live/bench" --duration "$((seconds + 120))s" \
        >"$work/gst-publisher.$run.txt" 2>&1 &
    pids+=($!)
    sleep 2
    gst_port=$(free_port)
    "$python" "$root/scripts/gst-rtsp-relay.py" --port "$gst_port" \
        --source "rtsp://127.0.0.1:$rtsp_port/live/bench" >"$work/gst.$run.log" 2>&1 &
    gst_pid=$!
    pids+=("$gst_pid")
    wait_port "$gst_port"
    gst_before=$(cpu_ticks "$gst_pid")
    measure "gst.$run" "$gst_pid" --url "rtsp://127.0.0.1:$gst_port/live/bench"
    result[gst.$run.whole_cpu]=$(awk -v a="$(cpu_ticks "$gst_pid")" -v b="$gst_before" -v hz="$hz" 'BEGIN { printf "%.2f", (a - b) / hz }')
    stop_all
done

echo
echo "== RTSP fan-out: 1 stream (2.2 Mbit/s H.264 + AAC) -> $players players, steady window ${seconds}s, $(nproc) CPUs shared with the load client; load average: $(cut -d' ' -f1-3 /proc/loadavg) =="
printf '%-6s %-34s %10s %10s %12s %10s\n' "run" "server" "CPU-s" "Gbit" "Gbit/CPU-s" "players ok"
for run in $(seq 1 "$runs"); do
    for entry in "rtmp:ringcast RTMP" "rtsp:ringcast RTSP (TCP interleaved)" "gst:GStreamer gst-rtsp-server"; do
        key=${entry%%:*}
        printf '%-6s %-34s %10s %10s %12s %10s\n' "$run" "${entry#*:}" "${result[$key.$run.cpu]}" \
            "${result[$key.$run.gbit]}" "${result[$key.$run.gbit_per_cpu]}" "${result[$key.$run.playing]}"
    done
    awk -v r="${result[rtsp.$run.gbit_per_cpu]}" -v m="${result[rtmp.$run.gbit_per_cpu]}" \
        -v g="${result[gst.$run.gbit_per_cpu]}" 'BEGIN {
            printf "       ringcast RTSP / ringcast RTMP: %s    ringcast RTSP / GStreamer: %s\n",
                (m > 0 ? sprintf("%.2fx", r / m) : "n/a"), (g > 0 ? sprintf("%.2fx", r / g) : "n/a") }'
done
