#!/usr/bin/env bash
# ringcast against nginx-rtmp, side by side in one run: same machine, same load client
# (ringcast-load), same generated media, same callback endpoint (a separate nginx answering
# `return 200`, optionally after a delay). Prints each server's numbers and the ratios.
#
# Usage: scripts/bench-vs-nginx.sh [--players N] [--seconds S] [--idle C] [--storm K]
#                                  [--channels SxP] [--callback-delay-ms MS]
#                                  [--only fanout,channels,idle,storm]
#                                  [--merge-write-ms MS]   (ringcast's merge_write_ms; default: its own, 50)
#                                  [--merge-write-bytes B] (ringcast's merge_write_bytes; default: its own)
#                                  [--merge-sweep MS,MS,...] (fan-out scenarios once per ringcast
#                                                             merge_write_ms, nginx-rtmp once)
#                                  [--storm-runs N]        (storms per server, interleaved; the median is shown)
#                                  [--protocols rtmp,http-flv,ws-flv] (ringcast's players in the
#                                                             fan-out scenarios, each its own run
#                                                             against ringcast's RTMP; default rtmp)
#                                  [--idle-players C]      (the idle-play scenario's players)
#                                  [--no-floor]            (skip the kernel floor runs)
#   defaults: fanout 1 stream (2.2 Mbit/s) -> 2000 players, channels 100 streams x 20 players
#   (~1 Mbit/s each), a steady window of 10 s, 15000 idle connections, a storm of 2000 players
#
# idle-play (not in the default --only): C players (default 15000) of one stream with rare
# frames (1 a second, ~1 kB, a GOP of one frame), once per --protocols entry on ringcast and
# over RTMP on nginx-rtmp: the server's peak RSS less its RSS before, per player held. What a
# connected player costs when no media flows, beside `idle` (connections that never play).
# idle-head (not in the default --only either): C connections (--idle, at most 12000 so all
# are open within ringcast's 10 s handshake_timeout) to ringcast's HTTP-FLV port, each having
# sent part of a request head and then nothing, held 3 s: peak RSS less RSS before, per
# connection.
#
# The fan-out scenarios (fanout, channels) are measured in two phases: the join (players
# ramped in at 200/s; bytes and server CPU per joining player) and then, 3 s after the last
# player started, a steady window of S seconds (bytes the players read, server CPU from
# /proc/PID/stat over the same window). The steady window is the fan-out figure: the join mixes
# in each ringcast player's cached GOP (one large, cheap write) that nginx-rtmp, without a GOP
# cache, never sends. The whole run (join included) is printed too, labelled as such.
#
# The kernel floor (a third column): after each ringcast fan-out run, `ringcast-load floor`
# writes the same number of loopback sockets from one bare thread, in one burst per period,
# with ringcast's bytes and iovecs per write (its last "shard writes" report) at ringcast's
# steady write rate (steady bytes / bytes per write), and reports Gbit per CPU-second of that
# thread: what the kernel costs at those writes with nothing above it. ringcast / floor and
# nginx-rtmp / floor say how far each server is from it (nginx-rtmp's own writes are
# smaller, so its floor would be lower: the ratio is against the writes ringcast makes).
#
# Both servers get one core's worth: ringcast `--shards 1`, nginx `worker_processes 1`.
# Installs nginx and libnginx-mod-rtmp (and, for --callback-delay-ms, the echo module) when
# missing. The machine's open-files cap (20000 here) bounds the idle and storm sizes: every
# connection is a descriptor in the server and in the load client.
#
# On a 2-core machine the load client and the server share the CPUs: the server numbers that
# count are its CPU seconds, not wall-clock rates. Run it more than once: the machine is shared.
#
# RINGCAST_BIN=PATH runs that server binary instead of this tree's (before/after comparisons:
# copy the earlier build aside first); SKIP_BUILD=1 builds nothing first.

set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

players=2000
seconds=10
idle=15000
storm=2000
delay_ms=0
only=fanout,channels,idle,storm
channels=100x20
merge_ms=
merge_bytes=
merge_sweep=
storm_runs=1
protocols=rtmp
idle_players=15000
floor=yes
while [[ $# -gt 0 ]]; do
    case $1 in
        --players) players=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --idle) idle=$2; shift 2 ;;
        --storm) storm=$2; shift 2 ;;
        --callback-delay-ms) delay_ms=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --merge-write-ms) merge_ms=$2; shift 2 ;;
        --merge-write-bytes) merge_bytes=$2; shift 2 ;;
        --merge-sweep) merge_sweep=$2; shift 2 ;;
        --channels) channels=$2; shift 2 ;;
        --storm-runs) storm_runs=$2; shift 2 ;;
        --protocols) protocols=$2; shift 2 ;;
        --idle-players) idle_players=$2; shift 2 ;;
        --no-floor) floor=no; shift ;;
        -h | --help) print_usage; exit 0 ;;
        *) echo "bench-vs-nginx: unknown option $1" >&2; exit 2 ;;
    esac
done

if [[ ! $channels =~ ^([0-9]+)x([0-9]+)$ ]]; then
    echo "bench-vs-nginx: --channels wants STREAMSxPLAYERS, e.g. 100x20" >&2
    exit 2
fi
channel_streams=${BASH_REMATCH[1]}
channel_players=${BASH_REMATCH[2]}
IFS=, read -r -a protocol_list <<<"$protocols"
for protocol in "${protocol_list[@]}"; do
    case $protocol in
        rtmp | http-flv | ws-flv) ;;
        *) echo "bench-vs-nginx: --protocols takes rtmp, http-flv, ws-flv; not $protocol" >&2; exit 2 ;;
    esac
done
if [[ -n $merge_ms && -n $merge_sweep ]]; then
    echo "bench-vs-nginx: --merge-write-ms and --merge-sweep exclude each other" >&2
    exit 2
fi

raise_open_files

need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx)
[[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]] || need_pkgs+=(libnginx-mod-rtmp)
if [[ $delay_ms -gt 0 && ! -e /usr/lib/nginx/modules/ngx_http_echo_module.so ]]; then
    need_pkgs+=(libnginx-mod-http-echo)
fi
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
    echo "bench-vs-nginx: installing ${need_pkgs[*]}" >&2
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2
fi
# The Debian package starts a default nginx on port 80; it does not matter here, but do not
# leave a second one behind that we started.

# SKIP_BUILD=1: use the binaries as they are (A/B runs while the tree changes).
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    echo "bench-vs-nginx: cargo build --release --bins" >&2
    (cd "$root" && cargo build --release --bins --quiet)
fi
load=$root/target/release/ringcast-load
# RINGCAST_BIN: another build of the server (a copy of an earlier commit's), for before/after.
ringcast_bin=${RINGCAST_BIN:-$root/target/release/ringcast}

work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-vs-nginx.XXXXXX")
pids=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    remove_work_dir "$work" "${KEEP:-0}" "kept $work"
}
trap cleanup EXIT

rss_kib() { status_kib "$1" VmRSS; }
# Peak RSS: what the server held while the connections were open. The RSS after the run says
# little: nginx frees a closed connection's memory, mimalloc keeps it for reuse.
hwm_kib() { status_kib "$1" VmHWM; }
hz=$(getconf CLK_TCK)

# The callback endpoint both servers ask: its own nginx, so its CPU is nobody's.
hook_port=$(free_port)
mkdir -p "$work/hook"
if [[ $delay_ms -gt 0 ]]; then
    hook_body="echo_sleep $(awk -v ms="$delay_ms" 'BEGIN { printf "%.3f", ms / 1000 }'); echo ok;"
    hook_modules="load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;"
else
    hook_body="return 200;"
    hook_modules=""
fi
cat >"$work/hook/nginx.conf" <<EOF
$hook_modules
worker_processes 1;
daemon off;
pid $work/hook/nginx.pid;
error_log $work/hook/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16000; }
http {
    access_log off;
    client_body_temp_path $work/hook;
    keepalive_requests 100000;
    server { listen 127.0.0.1:$hook_port backlog=4096; location / { $hook_body } }
}
EOF
nginx -p "$work/hook" -c "$work/hook/nginx.conf" 2>"$work/hook/stderr" &
pids+=($!)
hook_url=http://127.0.0.1:$hook_port/on_play

# Starts a server; sets server_pid (the process doing the work) and server_port. A third
# argument overrides ringcast's merge_write_ms.
start_server() {
    local kind=$1 callbacks=$2 merge=${3:-$merge_ms}
    server_port=$(free_port)
    if [[ $kind == ringcast ]]; then
        http_port=$(free_port)
        local args=(--rtmp-listen "127.0.0.1:$server_port" --shards 1 --http-listen "127.0.0.1:$http_port"
            --rtsp-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --log-level warn)
        [[ $callbacks == yes ]] && args+=(--on-play "$hook_url")
        : >"$work/ringcast.toml"
        [[ -n $merge ]] && printf 'merge_write_ms = %d\n' "$merge" >>"$work/ringcast.toml"
        [[ -n $merge_bytes ]] && printf 'merge_write_bytes = %d\n' "$merge_bytes" >>"$work/ringcast.toml"
        [[ -s $work/ringcast.toml ]] && args+=(--config "$work/ringcast.toml")
        # The flush tick's debug line ("shard writes", every 10 s) gives the write sizes and
        # iovecs per write of each fan-out run; a RUST_LOG of the caller's own wins.
        RUST_LOG=${RUST_LOG:-warn,ringcast::session::flush=debug} "$ringcast_bin" "${args[@]}" 2>"$work/ringcast.log" &
        server_pid=$!
        pids+=("$server_pid")
    else
        mkdir -p "$work/nginx"
        local on_play=""
        [[ $callbacks == yes ]] && on_play="on_play $hook_url;"
        cat >"$work/nginx/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
rtmp {
    server {
        listen 127.0.0.1:$server_port;
        chunk_size 4096;
        application live { live on; $on_play }
    }
}
EOF
        nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx/stderr" &
        local master=$!
        pids+=("$master")
        server_pid=
        for _ in $(seq 1 50); do
            server_pid=$(pgrep -P "$master" | head -n 1 || true)
            [[ -n $server_pid ]] && break
            sleep 0.1
        done
    fi
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$server_port") 2>/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench-vs-nginx: $kind did not start:" >&2
    [[ $kind == ringcast ]] && tail -n 3 "$work/ringcast.log" >&2
    return 1
}

stop_server() {
    local pid
    for pid in "${pids[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
    pids=("${pids[0]}")
    sleep 0.5
}

# The URL a player of PROTOCOL plays on the current server.
player_url() {
    case $1 in
        rtmp) echo "rtmp://127.0.0.1:$server_port/live/bench" ;;
        http-flv) echo "http://127.0.0.1:$http_port/live/bench.flv" ;;
        ws-flv) echo "ws://127.0.0.1:$http_port/live/bench.flv" ;;
    esac
}

# Runs ringcast-load against the current server; prints "cpu_s rss0_kib peak_kib json_path".
# Players play over $load_protocol (rtmp unless set); a publisher always sends RTMP.
load_protocol=rtmp
run_load() {
    local name=$1
    shift
    local before rss0 after rss1 url
    url=$(player_url "$load_protocol")
    local publish_url=()
    if [[ $load_protocol != rtmp && " $* " == *" --publish "* ]]; then
        publish_url=(--publish-url "$(player_url rtmp)")
    fi
    before=$(cpu_ticks "$server_pid")
    rss0=$(rss_kib "$server_pid")
    "$load" --url "$url" --server-pid "$server_pid" --json-out "$work/$name.json" "$@" "${publish_url[@]}" >"$work/$name.txt" 2>&1 || true
    after=$(cpu_ticks "$server_pid")
    rss1=$(hwm_kib "$server_pid")
    awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN { printf "%.2f", (a - b) / hz }'
    echo " $rss0 $rss1 $work/$name.json"
}

# The median of its arguments (the lower middle one for an even count); empty for none.
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# A ratio of two figures; none where one is negative (a join below the steady rate).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a < 0 || b <= 0) print "n/a"; else printf "%.2f", a / b }'; }

json() { python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    d = d.get(key) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"; }

# The fan-out scenarios: name, then ringcast-load's play arguments. ~1 Mbit/s per channel:
# 900 kbit/s of video and 96 of audio.
declare -A scenario_args scenario_label
scenario_args[fanout]="-n $players --publish"
scenario_label[fanout]="1 stream (2.2 Mbit/s) -> $players players"
scenario_args[channels]="-n $((channel_streams * channel_players)) --streams $channel_streams --publish --bitrate 900 --audio-bitrate 96"
scenario_label[channels]="$channel_streams streams x $channel_players players (~1 Mbit/s)"
declare -A scenario_players
scenario_players[fanout]=$players
scenario_players[channels]=$((channel_streams * channel_players))
fanout_scenarios=()
for scenario in fanout channels; do
    [[ ,$only, == *,$scenario,* ]] && fanout_scenarios+=("$scenario")
done

# One fan-out run against the current server, its figures stored under result[KEY.*].
declare -A result
fanout_run() {
    local key=$1 scenario=$2 cpu file bytes playing drops gone
    # shellcheck disable=SC2086 # one word per argument
    read -r cpu _ _ file < <(run_load "${key//./-}" play ${scenario_args[$scenario]} --window "$seconds" --threads 2)
    bytes=$(json "$file" play.bytes)
    result[$key.cpu]=$cpu
    result[$key.gbit]=$(awk -v b="${bytes:-0}" 'BEGIN { printf "%.2f", b * 8 / 1e9 }')
    result[$key.gbit_per_cpu]=$(awk -v b="${bytes:-0}" -v c="$cpu" 'BEGIN { printf "%.2f", (c > 0 ? b * 8 / 1e9 / c : 0) }')
    result[$key.steady.cpu]=$(json "$file" steady.server_cpu_s)
    result[$key.steady.gbit]=$(awk -v b="$(json "$file" steady.bytes)" 'BEGIN { printf "%.2f", b * 8 / 1e9 }')
    result[$key.steady.gbit_per_cpu]=$(json "$file" steady.gbit_per_server_cpu_s)
    result[$key.join.secs]=$(json "$file" join.secs)
    result[$key.join.kb]=$(awk -v b="$(json "$file" join.bytes_per_player)" 'BEGIN { printf "%.0f", b / 1000 }')
    result[$key.join.ms]=$(json "$file" join.server_cpu_ms_per_player)
    # What a join costs beyond streaming: the join phase less the steady rate over it, taken
    # at half the players (a linear ramp has half of them connected on average).
    read -r result[$key.join.extra_kb] result[$key.join.extra_ms] < <(awk \
        -v jb="$(json "$file" join.bytes)" -v jc="$(json "$file" join.server_cpu_s)" -v js="$(json "$file" join.secs)" \
        -v n="$(json "$file" join.players)" -v sb="$(json "$file" steady.bytes)" \
        -v sc="$(json "$file" steady.server_cpu_s)" -v ss="$(json "$file" steady.secs)" 'BEGIN {
            if (n > 0 && ss > 0) printf "%.0f %.3f\n", (jb - sb / ss * js / 2) / n / 1000, (jc - sc / ss * js / 2) * 1000 / n
            else print "n/a n/a" }')
    playing=$(json "$file" play.playing)
    drops=$(json "$file" play.with_drops)
    gone=$(json "$file" play.disconnected)
    result[$key.clean]=$((${playing:-0} - ${drops:-0} - ${gone:-0}))
    result[$key.lag99]=$(json "$file" play.lag.p99_ms)
    # The server's last write report (its last 10 s: the steady window, mostly); none from
    # nginx-rtmp or a build without it.
    local writes=
    [[ $key == ringcast* ]] && writes=$(grep -o 'bytes_per_write=[0-9]* iovecs_per_write_x100=[0-9]*' "$work/ringcast.log" 2>/dev/null | tail -n 1 || true)
    result[$key.write_bytes]=$(sed -n 's/.*bytes_per_write=\([0-9]*\).*/\1/p' <<<"$writes")
    result[$key.write_iovecs]=$(sed -n 's/.*iovecs_per_write_x100=\([0-9]*\).*/\1/p' <<<"$writes" | awk '{ printf "%.2f", $1 / 100 }')
    result[$key.steady.bytes]=$(json "$file" steady.bytes)
    result[$key.steady.secs]=$(json "$file" steady.secs)
}

# The kernel floor at a ringcast run's writes (see the header), its figures under
# result[KEY.floor.*]; run with no server up, so nothing else competes for the CPU.
floor_run() {
    local key=$1 scenario=$2 size=${result[$1.write_bytes]:-} iovecs rate file
    [[ $floor == yes && -n $size && $size -gt 0 ]] || return 0
    iovecs=$(awk -v i="${result[$key.write_iovecs]:-1}" 'BEGIN { n = int(i + 0.5); print (n < 1 ? 1 : n) }')
    rate=$(awk -v b="${result[$key.steady.bytes]:-0}" -v s="${result[$key.steady.secs]:-0}" -v w="$size" \
        'BEGIN { if (b > 0 && s > 0) printf "%.1f", b / s / w; else print 0 }')
    [[ $rate != 0 ]] || return 0
    file=$work/${key//./-}-floor.json
    "$load" floor -n "${scenario_players[$scenario]}" --write-bytes "$size" --iovecs "$iovecs" \
        --writes-per-second "$rate" --window "$seconds" --threads 2 --json-out "$file" >"$work/${key//./-}-floor.txt" 2>&1 || true
    result[$key.floor.gbit_per_cpu]=$(json "$file" floor.gbit_per_writer_cpu_s)
    result[$key.floor.late]=$(json "$file" floor.late_bursts)
    result[$key.floor.short]=$(awk -v p="$(json "$file" floor.partial)" -v b="$(json "$file" floor.blocked)" 'BEGIN { print p + b }')
}

# --merge-sweep: ringcast once per merge window (values the server refuses are shown as such),
# nginx-rtmp once, per fan-out scenario.
if [[ -n $merge_sweep ]]; then
    IFS=, read -r -a sweep <<<"$merge_sweep"
    for scenario in "${fanout_scenarios[@]}"; do
        for ms in "${sweep[@]}"; do
            if start_server ringcast no "$ms"; then
                fanout_run "ringcast.$scenario.m$ms" "$scenario"
            else
                result[ringcast.$scenario.m$ms.refused]=yes
            fi
            stop_server
            floor_run "ringcast.$scenario.m$ms" "$scenario"
        done
        start_server nginx no
        fanout_run "nginx.$scenario" "$scenario"
        stop_server
    done
    echo
    echo "== merge window: ringcast (one shard) vs nginx-rtmp (one worker), steady window ${seconds}s, $(nproc) CPUs shared with the load client =="
    printf '%-44s %-16s %10s %11s %9s %11s %9s %9s %11s %6s\n' "scenario" "server" "lag p99 ms" "Gbit/CPU-s" "vs nginx" \
        "floor" "vs floor" "nginx/fl" "bytes/write" "held"
    for scenario in "${fanout_scenarios[@]}"; do
        for ms in "${sweep[@]}"; do
            k=ringcast.$scenario.m$ms
            if [[ -n ${result[$k.refused]:-} ]]; then
                printf '%-44s %-16s %10s %11s\n' "${scenario_label[$scenario]}" "merge ${ms} ms" "refused" "(config range)"
                continue
            fi
            printf '%-44s %-16s %10s %11s %9s %11s %9s %9s %11s %6s\n' "${scenario_label[$scenario]}" "merge ${ms} ms" \
                "${result[$k.lag99]}" "${result[$k.steady.gbit_per_cpu]}" \
                "$(ratio "${result[$k.steady.gbit_per_cpu]}" "${result[nginx.$scenario.steady.gbit_per_cpu]}")" \
                "${result[$k.floor.gbit_per_cpu]:-}" "$(ratio "${result[$k.steady.gbit_per_cpu]}" "${result[$k.floor.gbit_per_cpu]:-}")" \
                "$(ratio "${result[nginx.$scenario.steady.gbit_per_cpu]}" "${result[$k.floor.gbit_per_cpu]:-}")" \
                "${result[$k.write_bytes]}" "${result[$k.clean]}"
        done
        printf '%-44s %-16s %10s %11s %9s %11s %9s %9s %11s %6s\n' "${scenario_label[$scenario]}" "nginx-rtmp" \
            "${result[nginx.$scenario.lag99]}" "${result[nginx.$scenario.steady.gbit_per_cpu]}" "1.00" "" "" "" "" "${result[nginx.$scenario.clean]}"
    done
    echo "(lag p99: publisher send to player receive, over the whole run without each player's cached GOP;"
    echo " floor: Gbit per CPU-second of one bare thread making ringcast's writes of that row (bytes/write, iovecs,"
    echo " rate) to as many loopback readers; vs floor: ringcast / floor; nginx/fl: nginx-rtmp / that floor;"
    echo " held: players that kept receiving without drops: a server that held fewer fell behind, and its figures are not comparable)"
    exit 0
fi

# Where a ringcast run's figures go: ringcast.* for RTMP players (the keys nginx-rtmp's are
# compared with), ringcast-PROTOCOL.* for the others.
ringcast_key() { if [[ $1 == rtmp ]]; then echo ringcast; else echo "ringcast-$1"; fi; }
protocol_label() { case $1 in rtmp) echo RTMP ;; http-flv) echo HTTP-FLV ;; ws-flv) echo WebSocket-FLV ;; esac; }

# Per scenario, ringcast once per player protocol and then nginx-rtmp, back to back: the
# figures compared are taken minutes apart at most, on a machine whose load drifts.
for scenario in "${fanout_scenarios[@]}"; do
    for protocol in "${protocol_list[@]}"; do
        load_protocol=$protocol
        start_server ringcast no
        fanout_run "$(ringcast_key "$protocol").$scenario" "$scenario"
        stop_server
        floor_run "$(ringcast_key "$protocol").$scenario" "$scenario"
    done
    load_protocol=rtmp
    start_server nginx no
    fanout_run "nginx.$scenario" "$scenario"
    stop_server
done

# idle-play: players that joined a stream and then wait, the publisher sending a ~1 kB
# keyframe a second (a GOP of one frame, so a join replays one frame).
idle_play_run() {
    local kind=$1 key=$2 file
    start_server "$kind" no
    read -r _ rss0 rss1 file < <(run_load "${key//./-}-idle-play" play -n "$idle_players" --publish \
        --fps 1 --gop 1 --bitrate 8 --audio-bitrate 0 --ramp 3000 --window 2 --settle 2 --threads 2)
    held=$(json "$file" play.playing)
    result[$key.idle_play.held]=${held:-0}
    result[$key.idle_play.lag99]=$(json "$file" play.lag.p99_ms)
    result[$key.idle_play.kib]=$(awk -v a="$rss1" -v b="$rss0" -v n="${held:-0}" 'BEGIN { printf "%.2f", (n > 0 ? (a - b) / n : 0) }')
    stop_server
}
if [[ ,$only, == *,idle-play,* ]]; then
    for protocol in "${protocol_list[@]}"; do
        load_protocol=$protocol
        idle_play_run ringcast "$(ringcast_key "$protocol")"
    done
    load_protocol=rtmp
    idle_play_run nginx nginx
fi

if [[ ,$only, == *,idle-head,* ]]; then
    start_server ringcast no
    head_conns=$((idle < 12000 ? idle : 12000))
    rss0=$(rss_kib "$server_pid")
    held=$(python3 - "$http_port" "$head_conns" <<'PY'
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(count):
    s = socket.socket()
    s.bind(("127.0.0.%d" % (2 + i % 16), 0))  # spread over source addresses, as ringcast-load does
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /live/bench.flv HTTP/1.1\r\nHost: x\r\n")
        held.append(s)
    except OSError:
        s.close()
time.sleep(3)
# Those the server still holds: a closed one reads as EOF (nothing else is sent to them).
open_now = 0
for s in held:
    s.setblocking(False)
    try:
        open_now += s.recv(1) != b""
    except BlockingIOError:
        open_now += 1
    except OSError:
        pass
print(open_now)
PY
)
    rss1=$(hwm_kib "$server_pid")
    result[ringcast.idle_head.held]=$held
    result[ringcast.idle_head.kib]=$(awk -v a="$rss1" -v b="$rss0" -v n="$held" 'BEGIN { printf "%.2f", (n > 0 ? (a - b) / n : 0) }')
    stop_server
fi

for kind in ringcast nginx; do
    if [[ ,$only, == *,idle,* ]]; then
        start_server "$kind" no
        read -r _ rss0 rss1 file < <(run_load "$kind-idle" idle -c "$idle" --duration 5)
        held=$(json "$file" idle.held)
        [[ -z $held ]] && held=$idle
        result[$kind.idle.kib]=$(awk -v a="$rss1" -v b="$rss0" -v n="$held" 'BEGIN { printf "%.2f", (n > 0 ? (a - b) / n : 0) }')
        result[$kind.idle.held]=$held
        stop_server
    fi
done

# Storms are short and the noisiest figure here: with --storm-runs N each server gets N
# storms of each kind, interleaved (ringcast, nginx, ringcast, ...), and the table shows the
# median run.
declare -A storm_p99 storm_cpu
if [[ $only == *storm* ]]; then
    for round in $(seq 1 "$storm_runs"); do
        for kind in ringcast nginx; do
            for callbacks in no yes; do
                start_server "$kind" "$callbacks"
                read -r cpu _ _ file < <(run_load "$kind-storm-$callbacks-$round" connect -k "$storm" --then play --publish)
                storm_p99[$kind.$callbacks]+="$(json "$file" connect.first_media.p99_ms) "
                storm_cpu[$kind.$callbacks]+="$cpu "
                result[$kind.storm.$callbacks.done]=$(json "$file" connect.completed)
                stop_server
            done
        done
    done
    for kind in ringcast nginx; do
        for callbacks in no yes; do
            # Unquoted on purpose: one argument per run.
            # shellcheck disable=SC2086
            result[$kind.storm.$callbacks.p99]=$(median ${storm_p99[$kind.$callbacks]})
            # shellcheck disable=SC2086
            result[$kind.storm.$callbacks.cpu]=$(median ${storm_cpu[$kind.$callbacks]})
        done
        # What a viewer sees: the first picture. A separate run, because players held until
        # their keyframe stay connected longer and would change the first-media runs.
        start_server "$kind" yes
        read -r _ _ _ file < <(run_load "$kind-storm-keyframe" connect -k "$storm" --then play --publish --until-keyframe)
        result[$kind.storm.keyframe.p99]=$(json "$file" connect.first_keyframe.p99_ms)
        stop_server
    done
fi

echo
echo "== ringcast (merge_write_ms = ${merge_ms:-default}, merge_write_bytes = ${merge_bytes:-default}) vs nginx-rtmp ($(nproc) CPUs shared with the load client; one shard / one worker) =="
printf '%-56s %14s %14s %10s\n' "measure" "ringcast" "nginx-rtmp" "ratio"
row() { printf '%-56s %14s %14s %10s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
for scenario in "${fanout_scenarios[@]}"; do
    r=ringcast.$scenario n=nginx.$scenario
    echo "-- $scenario: ${scenario_label[$scenario]}; steady window ${seconds}s after every player joined --"
    row "$scenario: steady server CPU-s" "${result[$r.steady.cpu]}" "${result[$n.steady.cpu]}"
    row "$scenario: steady Gbit delivered" "${result[$r.steady.gbit]}" "${result[$n.steady.gbit]}"
    row "$scenario: steady Gbit per server CPU-second" "${result[$r.steady.gbit_per_cpu]}" "${result[$n.steady.gbit_per_cpu]}"
    row "$scenario: join: seconds (ramp 200/s)" "${result[$r.join.secs]}" "${result[$n.join.secs]}"
    row "$scenario: join: kB per joining player" "${result[$r.join.kb]}" "${result[$n.join.kb]}"
    row "$scenario: join: server CPU ms per player" "${result[$r.join.ms]}" "${result[$n.join.ms]}"
    row "$scenario: join: kB per player above steady" "${result[$r.join.extra_kb]}" "${result[$n.join.extra_kb]}"
    row "$scenario: join: CPU ms per player above steady" "${result[$r.join.extra_ms]}" "${result[$n.join.extra_ms]}"
    row "$scenario: whole run (join incl.): Gbit/CPU-s" "${result[$r.gbit_per_cpu]}" "${result[$n.gbit_per_cpu]}"
    row "$scenario: players held without drops" "${result[$r.clean]}" "${result[$n.clean]}"
    row "$scenario: lag p99 (ms)" "${result[$r.lag99]}" "${result[$n.lag99]}"
    row "$scenario: bytes per write (ringcast's last 10 s)" "${result[$r.write_bytes]}" ""
    row "$scenario: iovecs per write (ringcast's last 10 s)" "${result[$r.write_iovecs]}" ""
    if [[ -n ${result[$r.floor.gbit_per_cpu]:-} ]]; then
        row "$scenario: kernel floor at ringcast's writes, Gbit/CPU-s" "${result[$r.floor.gbit_per_cpu]}" ""
        row "$scenario: server / kernel floor" "$(ratio "${result[$r.steady.gbit_per_cpu]}" "${result[$r.floor.gbit_per_cpu]}")" \
            "$(ratio "${result[$n.steady.gbit_per_cpu]}" "${result[$r.floor.gbit_per_cpu]}")"
    fi
done
# The other player protocols against ringcast's own RTMP players (the same server, publisher
# and media; only how the players read differs).
for protocol in "${protocol_list[@]}"; do
    [[ $protocol == rtmp ]] && continue
    p=$(ringcast_key "$protocol")
    label=$(protocol_label "$protocol")
    for scenario in "${fanout_scenarios[@]}"; do
        echo "-- $scenario: ringcast, $label players vs RTMP players (columns: $label, RTMP, ratio) --"
        row "$scenario: steady server CPU-s" "${result[$p.$scenario.steady.cpu]}" "${result[ringcast.$scenario.steady.cpu]:-}"
        row "$scenario: steady Gbit delivered" "${result[$p.$scenario.steady.gbit]}" "${result[ringcast.$scenario.steady.gbit]:-}"
        row "$scenario: steady Gbit per server CPU-second" "${result[$p.$scenario.steady.gbit_per_cpu]}" "${result[ringcast.$scenario.steady.gbit_per_cpu]:-}"
        row "$scenario: join: kB per joining player" "${result[$p.$scenario.join.kb]}" "${result[ringcast.$scenario.join.kb]:-}"
        row "$scenario: join: server CPU ms per player" "${result[$p.$scenario.join.ms]}" "${result[ringcast.$scenario.join.ms]:-}"
        row "$scenario: whole run (join incl.): Gbit/CPU-s" "${result[$p.$scenario.gbit_per_cpu]}" "${result[ringcast.$scenario.gbit_per_cpu]:-}"
        row "$scenario: players held without drops" "${result[$p.$scenario.clean]}" "${result[ringcast.$scenario.clean]:-}"
        row "$scenario: lag p99 (ms)" "${result[$p.$scenario.lag99]}" "${result[ringcast.$scenario.lag99]:-}"
        row "$scenario: bytes per write (last 10 s)" "${result[$p.$scenario.write_bytes]}" "${result[ringcast.$scenario.write_bytes]:-}"
        row "$scenario: iovecs per write (last 10 s)" "${result[$p.$scenario.write_iovecs]}" "${result[ringcast.$scenario.write_iovecs]:-}"
    done
done
if [[ ,$only, == *,idle-play,* ]]; then
    echo "-- idle-play: $idle_players players of a stream with 1 frame a second (~1 kB); RSS peak less RSS before, per player held;"
    echo "   columns: ringcast's players of each protocol, nginx-rtmp's RTMP players (${result[nginx.idle_play.held]} held), ratio --"
    for protocol in "${protocol_list[@]}"; do
        p=$(ringcast_key "$protocol")
        row "idle-play: $(protocol_label "$protocol") KiB/player (${result[$p.idle_play.held]} held)" \
            "${result[$p.idle_play.kib]}" "${result[nginx.idle_play.kib]}"
    done
    # A frame a second makes a write's last frame wait for the next one wherever a player can
    # only take a frame once more bytes follow it: this row shows it.
    for protocol in "${protocol_list[@]}"; do
        p=$(ringcast_key "$protocol")
        row "idle-play: $(protocol_label "$protocol") lag p99 (ms)" "${result[$p.idle_play.lag99]}" "${result[nginx.idle_play.lag99]}"
    done
fi
if [[ ,$only, == *,idle-head,* ]]; then
    row "idle-head: KiB RSS per HTTP connection (${result[ringcast.idle_head.held]} held)" "${result[ringcast.idle_head.kib]}" ""
fi
if [[ ,$only, == *,idle,* ]]; then
    row "idle: KiB RSS per connection (${result[ringcast.idle.held]:-?} held)" "${result[ringcast.idle.kib]}" "${result[nginx.idle.kib]}"
fi
if [[ $only == *storm* ]]; then
    row "storm $storm: p99 to first media, no callback (ms)" "${result[ringcast.storm.no.p99]}" "${result[nginx.storm.no.p99]}"
    row "storm $storm: p99 to first media, on_play ${delay_ms}ms (ms)" "${result[ringcast.storm.yes.p99]}" "${result[nginx.storm.yes.p99]}"
    row "storm $storm: p99 to first keyframe, on_play (ms)" "${result[ringcast.storm.keyframe.p99]}" "${result[nginx.storm.keyframe.p99]}"
    row "storm $storm: completed, with callback" "${result[ringcast.storm.yes.done]}" "${result[nginx.storm.yes.done]}"
    row "storm $storm: server CPU-s, with callback" "${result[ringcast.storm.yes.cpu]}" "${result[nginx.storm.yes.cpu]}"
    if [[ $storm_runs -gt 1 ]]; then
        echo "storm p99 to first media per run (ms; the rows above show the median of $storm_runs):"
        for kind in ringcast nginx; do
            for callbacks in no yes; do
                printf '  %-8s callback %-3s %s\n' "$kind" "$callbacks" "${storm_p99[$kind.$callbacks]}"
            done
        done
    fi
fi
echo "(ratio = ringcast / nginx-rtmp: above 1 is better for Gbit and players, below 1 for CPU, KiB and latency)"
