#!/usr/bin/env bash
# Soak: the release server under churn for MINUTES (default 30), its memory and descriptors
# sampled every 10 s into a CSV, and a verdict on their growth after warm-up.
#
# Usage: scripts/soak.sh [MINUTES=30]
#
# What runs (all on loopback, all bounded by MINUTES):
#   - hooks on: [notify] on_connect/on_publish/on_play/on_done and a [[webhook]] for every event,
#     all answered 200 by scripts/soak-hooks.py (keep-alive), counted by path;
#   - publishers coming and going: STREAMS (4) generated publishers (ringcast-load publish,
#     ~1 Mbit/s each) that run for 50 s, leave for 5 s, and come back;
#   - 2000 players joining and leaving: four ringcast-load play loops of 500 players each
#     (two RTMP, one HTTP-FLV, one WebSocket-FLV), spread over the streams, each run 45 s
#     then restarted, started 12 s apart so joins and leaves never stop.
# Every 10 s: elapsed seconds, the server's VmRSS (KiB), its open descriptors, the players,
# live streams, open client connections and callback connections it reports (/metrics), into
# soak.csv in the work directory (printed at the end).
#
# Verdict, over the samples after warm-up (the first 20% of the run, at least 2 minutes), by
# least-squares slope: RSS must grow by at most SOAK_RSS_SLOPE KiB per minute (default 1024),
# and "unexplained descriptors" (open descriptors minus open client connections,
# `ringcast_connections`: every connection on a media port, joining, playing or publishing,
# and minus the connections to the callback endpoint, idle or in use,
# `ringcast_callback_connections_idle` + `ringcast_callback_in_flight`, so churn does not count)
# by at most SOAK_FD_SLOPE per minute (default 1). Players alone would leave the connections
# still joining and the callbacks' keep-alive connections (up to 512 per shard, kept 30 s) in
# the difference: with 500 players joining at once that swings by hundreds between samples and
# drowns a slope. Exit status 1 when either is exceeded or the server died, 0 otherwise.
#
# Environment: SHARDS (default: CPUs), SOAK_RSS_SLOPE, SOAK_FD_SLOPE, SKIP_BUILD=1 (use the
# binaries in target/release as they are), KEEP_WORK=1 (keep logs and the CSV; the CSV path is
# printed either way and copied to SOAK_CSV if that is set).

set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
minutes=${1:-30}
[[ $minutes =~ ^[0-9]+$ && $minutes -ge 1 ]] || { echo "soak: MINUTES is a whole number >= 1" >&2; exit 2; }
shards=${SHARDS:-$(nproc)}
streams=4
rss_slope_max=${SOAK_RSS_SLOPE:-1024}
fd_slope_max=${SOAK_FD_SLOPE:-1}
duration=$((minutes * 60))

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    echo "soak: cargo build --release --bins" >&2
    (cd "$root" && cargo build --release --bins --quiet)
fi

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-soak.XXXXXX")
csv=$work/soak.csv
pids=()
server_pid=
hooks_pid=

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Shutdown takes up to shutdown_timeout (10 s); then insist.
    [[ -n $server_pid ]] && stop_process "$server_pid" 15
    # Last, so the server's closing callbacks are answered too.
    [[ -n $hooks_pid ]] && stop_process "$hooks_pid" 2
    wait 2>/dev/null || true
    [[ -n ${SOAK_CSV:-} && -f $csv ]] && cp "$csv" "$SOAK_CSV"
    remove_work_dir "$work" "${KEEP_WORK:-0}" "soak: logs and CSV kept in $work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$root/scripts/soak-hooks.py" "$work/hooks.port" "$work/hooks.counts" &
hooks_pid=$!
for _ in $(seq 1 50); do
    [[ -s $work/hooks.port ]] && break
    sleep 0.1
done
hooks="http://127.0.0.1:$(cat "$work/hooks.port")"

cat >"$work/ringcast.toml" <<TOML
hook_timeout = "5s"
[notify]
timeout = "5s"
on_connect = "$hooks/on_connect"
on_publish = "$hooks/on_publish"
on_play = "$hooks/on_play"
on_done = "$hooks/on_done"

[[webhook]]
url = "$hooks/events"
events = ["*"]
TOML

RUST_LOG=${RUST_LOG:-warn,ringcast::server=info} \
    "$root/target/release/ringcast" --config "$work/ringcast.toml" --rtmp-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --rtsp-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --shards "$shards" \
    2>"$work/server.log" &
server_pid=$!
ready=
for _ in $(seq 1 100); do
    ready=$(grep -m1 'ready: rtmp=' "$work/server.log" 2>/dev/null || true)
    [[ -n $ready ]] && break
    sleep 0.1
done
[[ -n $ready ]] || { echo "soak: the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $ready"; }
rtmp=$(field rtmp)
http=$(field http)
api=$(field api)
echo "soak: ringcast pid $server_pid ($ready); $minutes min, work dir $work" >&2

load=$root/target/release/ringcast-load
end=$((SECONDS + duration))
# Runs "$@" again and again until the soak ends, pausing $1 seconds between runs; each run is
# cut at the soak's end.
repeat() {
    local pause=$1
    shift
    while [[ $SECONDS -lt $end ]]; do
        timeout --kill-after=5 $((end - SECONDS + 1)) "$@" >>"$work/load.log" 2>&1 || true
        sleep "$pause"
    done
}

repeat 5 "$load" --url "rtmp://$rtmp/live/soak" publish -m "$streams" --duration 50s --bitrate 900 \
    --audio-bitrate 64 &
pids+=($!)
players=(
    "rtmp://$rtmp/live/soak"
    "http://$http/live/soak.flv"
    "rtmp://$rtmp/live/soak"
    "ws://$http/live/soak.flv"
)
for at in "${!players[@]}"; do
    # Staggered: the first loop 3 s after the publishers, the others 12 s apart.
    (sleep $((3 + 12 * at)) && repeat 1 "$load" --url "${players[$at]}" play -n 500 --streams "$streams" \
        --ramp 200 --duration 45s) &
    pids+=($!)
done

metric() { awk -v name="$1" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }' <<<"$2"; }
echo "seconds,rss_kib,open_files,players,live_streams,connections,callback_connections" >"$csv"
started=$SECONDS
while [[ $SECONDS -lt $end ]]; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "soak: the server died" >&2
        tail -n 50 "$work/server.log" >&2
        exit 1
    fi
    metrics=$(curl -s --max-time 5 "http://$api/metrics" || true)
    rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$server_pid/status")
    fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    echo "$((SECONDS - started)),$rss,$fds,$(metric ringcast_players "$metrics"),$(metric ringcast_streams_live "$metrics"),$(metric ringcast_connections "$metrics"),$(($(metric ringcast_callback_connections_idle "$metrics") + $(metric ringcast_callback_in_flight "$metrics")))" >>"$csv"
    sleep 10
done

echo "soak: hook requests by path:" >&2
sed 's/^/  /' "$work/hooks.counts" >&2 || true
echo "soak: server ERROR lines by message:" >&2
grep ' ERROR ' "$work/server.log" | sed 's/.* ERROR \([^ ]*\) \([^=]*\) [a-z_]*=.*/\1 \2/' | sort | uniq -c | sort -rn | head -n 10 >&2 || true
python3 - "$csv" "$minutes" "$rss_slope_max" "$fd_slope_max" <<'PY'
import csv, sys

path, minutes, rss_max, fd_max = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(open(path))]
warmup = max(120.0, 0.2 * minutes * 60)
after = [r for r in rows if r["seconds"] >= warmup]
if len(after) < 3:
    print(f"soak: only {len(after)} samples after the {warmup:.0f} s warm-up: no verdict")
    sys.exit(1)

def slope_per_minute(key):
    xs = [r["seconds"] / 60 for r in after]
    ys = [key(r) for r in after]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)

rss = slope_per_minute(lambda r: r["rss_kib"])
unexplained = lambda r: r["open_files"] - r["connections"] - r["callback_connections"]
fds = slope_per_minute(unexplained)
first, last = after[0], after[-1]
print(f"soak: {len(rows)} samples, {len(after)} after the {warmup:.0f} s warm-up")
print(f"soak: RSS {first['rss_kib'] / 1024:.1f} -> {last['rss_kib'] / 1024:.1f} MiB "
      f"(max {max(r['rss_kib'] for r in rows) / 1024:.1f}); slope {rss:+.1f} KiB/min (limit {rss_max:.0f})")
print(f"soak: open files {first['open_files']:.0f} -> {last['open_files']:.0f}, players "
      f"{first['players']:.0f} -> {last['players']:.0f}, connections {first['connections']:.0f} -> "
      f"{last['connections']:.0f}; unexplained descriptors "
      f"{unexplained(first):.0f} -> {unexplained(last):.0f}, slope {fds:+.2f}/min (limit {fd_max:g})")
failed = rss > rss_max or fds > fd_max
print("soak: FAILED" if failed else "soak: passed")
sys.exit(1 if failed else 0)
PY
