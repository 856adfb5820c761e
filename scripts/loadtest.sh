#!/usr/bin/env bash
# One-command load test: builds ringcast and ringcast-load (release), starts a fresh server on
# a free loopback port, runs one scenario against it, prints the load generator's report and
# what the server spent (CPU seconds, memory), then stops the server.
#
# Usage: scripts/loadtest.sh SCENARIO [NUMBERS...] [ringcast-load options...]
#
#   fanout  [PLAYERS=200] [SECONDS=10]  1 generated publisher + PLAYERS players, ramped in;
#                                        then, 3 s after the last joined, a steady window of SECONDS
#   channels [STREAMS=100] [PLAYERS=20] [SECONDS=10]  STREAMS publishers (~1 Mbit/s each) with
#                                        PLAYERS players each; the same join + steady window
#   publish [PUBLISHERS=10] [SECONDS=10] real-time generated publishers (live/load, load-1, ...)
#   idle    [CONNECTIONS=2000] [SECONDS=10]  handshaken, connected, idle RTMP connections
#   storm   [CONNECTIONS=1000]           connection storm: handshake + connect, as fast as possible
#   storm-play [CONNECTIONS=1000]        storm that also plays to the first media packet
#
# Options after the numbers go to ringcast-load as they are (--threads 2, --json, --ramp 500,
# --flv FILE, --bitrate 4000, --progress...). Environment:
#   SHARDS=N        server shards (default: number of CPUs)
#   PROTOCOL=P      how the players read: rtmp (default), http-flv or ws-flv (WebSocket-FLV);
#                   a publisher (--publish) always sends RTMP
#   MERGE_WRITE_MS=N  the server's merged-write window (merge_write_ms; default: its own)
#   SERVER_ARGS=... more ringcast flags (e.g. "--config my.toml")
#   KEEP_LOG=1      keep the server log (its path is printed)
#
# On a small machine the load client and the server share the CPUs: the numbers that describe
# the server are its CPU seconds (and Gbit delivered per server CPU-second), not wall-clock
# rates. The fan-out scenarios report the join (bytes and server CPU per joining player) and the
# steady window (Gbit per server CPU-second with every player joined) apart; the summary below
# them is the whole run, join included. Open files are capped per process (often 20000 here):
# the script raises the soft limit to the hard one, and scenarios must fit it (an idle run
# needs one descriptor per connection in each process).

set -euo pipefail

usage() {
    # The header comment, up to the first line that is not one.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
}

[[ $# -ge 1 ]] || usage
scenario=$1
shift
numbers=()
while [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; do
    numbers+=("$1")
    shift
done
extra=("$@")
# With --json, stdout is one JSON object for scripts: the server summary goes to stderr.
summary_fd=1
for arg in "${extra[@]}"; do
    if [[ $arg == --json ]]; then
        summary_fd=2
    fi
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shards=${SHARDS:-$(nproc)}
cpus=$(nproc)

case $scenario in
    fanout)
        players=${numbers[0]:-200}
        secs=${numbers[1]:-10}
        load_args=(play -n "$players" --window "$secs" --publish)
        ;;
    channels)
        streams=${numbers[0]:-100}
        players=${numbers[1]:-20}
        secs=${numbers[2]:-10}
        load_args=(play -n "$((streams * players))" --streams "$streams" --window "$secs" --publish
            --bitrate 900 --audio-bitrate 96)
        ;;
    publish)
        publishers=${numbers[0]:-10}
        secs=${numbers[1]:-10}
        load_args=(publish -m "$publishers" --duration "$secs")
        ;;
    idle)
        connections=${numbers[0]:-2000}
        secs=${numbers[1]:-10}
        load_args=(idle -c "$connections" --duration "$secs")
        ;;
    storm)
        connections=${numbers[0]:-1000}
        load_args=(connect -k "$connections")
        ;;
    storm-play)
        connections=${numbers[0]:-1000}
        load_args=(connect -k "$connections" --then play --publish)
        ;;
    -h | --help | help) usage ;;
    *)
        echo "loadtest: unknown scenario '$scenario' (fanout, channels, publish, idle, storm, storm-play)" >&2
        exit 2
        ;;
esac

# Every connection is a descriptor, in the server and in the load client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "loadtest: open-files limit $(ulimit -n); $cpus CPUs, server shards $shards" >&2

echo "loadtest: cargo build --release --bins" >&2
(cd "$root" && cargo build --release --bins --quiet)

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-loadtest.XXXXXX")
log=$work/server.log
server_pid=

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    # Graceful shutdown takes up to 5 s; then insist.
    [[ -n $server_pid ]] && stop_process "$server_pid" 7
    remove_work_dir "$work" "${KEEP_LOG:-0}" "loadtest: server log kept in $log"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

config_args=()
if [[ -n ${MERGE_WRITE_MS:-} ]]; then
    printf 'merge_write_ms = %d\n' "$MERGE_WRITE_MS" >"$work/ringcast.toml"
    config_args=(--config "$work/ringcast.toml")
    echo "loadtest: server merge_write_ms = $MERGE_WRITE_MS" >&2
fi

# Port 0: the server picks a free port and says which in its ready line. Only the ready line
# is logged at info: per-session log lines would be server CPU the test did not ask for.
# shellcheck disable=SC2086
RUST_LOG=${RUST_LOG:-warn,ringcast::server=info} \
    "$root/target/release/ringcast" --rtmp-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --shards "$shards" \
    "${config_args[@]}" ${SERVER_ARGS:-} 2>"$log" &
server_pid=$!

# The shell that starts the server creates its log: the first look may come before it.
addr=
for _ in $(seq 1 100); do
    addr=$(sed -n 's/.*ready: rtmp=\([^ ]*\).*/\1/p' "$log" 2>/dev/null | head -n 1 || true)
    http_addr=$(sed -n 's/.*ready: .* http=\([^ ]*\).*/\1/p' "$log" 2>/dev/null | head -n 1 || true)
    [[ -n $addr ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "loadtest: ringcast exited before it was ready:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z $addr ]]; then
    echo "loadtest: no ready line from ringcast within 10 s:" >&2
    cat "$log" >&2
    exit 1
fi
echo "loadtest: ringcast pid $server_pid ready on $addr" >&2


ticks_per_sec=$(getconf CLK_TCK)
cpu_before=$(cpu_ticks "$server_pid")
rss_before=$(status_kib "$server_pid" VmRSS)
started=$(date +%s.%N)

# The players' URL; a publisher in the same run sends RTMP (--publish-url).
url=rtmp://$addr/live/load
publish_url=()
case ${PROTOCOL:-rtmp} in
    rtmp) ;;
    http-flv | ws-flv)
        url=${PROTOCOL%-flv}://$http_addr/live/load.flv
        if [[ ${load_args[0]} == play && " ${load_args[*]} " == *" --publish "* ]]; then
            publish_url=(--publish-url "rtmp://$addr/live/load")
        fi
        ;;
    *) echo "loadtest: PROTOCOL is rtmp, http-flv or ws-flv, not $PROTOCOL" >&2; exit 2 ;;
esac

json=$work/result.json
set +e
"$root/target/release/ringcast-load" --url "$url" --server-pid "$server_pid" \
    --json-out "$json" "${load_args[@]}" "${publish_url[@]}" "${extra[@]}"
load_status=$?
set -e

ended=$(date +%s.%N)
cpu_after=$(cpu_ticks "$server_pid")
rss_after=$(status_kib "$server_pid" VmRSS)
hwm=$(status_kib "$server_pid" VmHWM)

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "loadtest: the server died during the run; its log:" >&2
    tail -n 50 "$log" >&2
    exit 1
fi

# Bytes players received, from the JSON report (python3 if present; the table has it anyway).
delivered=
if [[ -s $json ]] && command -v python3 >/dev/null; then
    delivered=$(python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
print(d.get("play", {}).get("bytes", ""))' "$json" 2>/dev/null || true)
fi

awk -v before="$cpu_before" -v after="$cpu_after" -v hz="$ticks_per_sec" \
    -v t0="$started" -v t1="$ended" -v rss0="$rss_before" -v rss1="$rss_after" -v hwm="$hwm" \
    -v bytes="$delivered" -v cpus="$cpus" -v shards="$shards" -v pid="$server_pid" \
    -v scenario="$scenario" 'BEGIN {
    cpu = (after - before) / hz
    wall = t1 - t0
    printf "== loadtest %s: server (pid %d, %d shards), whole run ==\n", scenario, pid, shards
    printf "  server CPU-seconds        %.2f over %.1f s of load (%.2f cores)\n", cpu, wall, (wall > 0 ? cpu / wall : 0)
    printf "  server RSS                %.1f MiB before, %.1f MiB after, %.1f MiB peak (VmHWM)\n", rss0 / 1024, rss1 / 1024, hwm / 1024
    if (bytes != "" && bytes > 0) {
        gbit = bytes * 8 / 1e9
        printf "  delivered to players      %.2f Gbit\n", gbit
        if (cpu > 0) printf "  Gbit per server CPU-s     %.2f\n", gbit / cpu
    }
    if (cpus <= 4)
        printf "  note: %d CPUs shared by the load client and the server; compare CPU-seconds, not wall time\n", cpus
}' >&"$summary_fd"
exit "$load_status"
