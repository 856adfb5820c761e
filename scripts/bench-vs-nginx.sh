#!/usr/bin/env bash
# ringcast against nginx-rtmp, side by side in one run: same machine, same load client
# (ringcast-load), same generated media, same callback endpoint (a separate nginx answering
# `return 200`, optionally after a delay). Prints each server's numbers and the ratios.
#
# Usage: scripts/bench-vs-nginx.sh [--players N] [--seconds S] [--idle C] [--storm K]
#                                  [--callback-delay-ms MS] [--only fanout,idle,storm]
#                                  [--merge-write-ms MS]   (ringcast's merge_write_ms; default: its own, 50)
#                                  [--storm-runs N]        (storms per server, interleaved; the median is shown)
#   defaults: 2000 players for 10 s, 15000 idle connections, a storm of 2000 players
#
# Both servers get one core's worth: ringcast `--shards 1`, nginx `worker_processes 1`.
# Installs nginx and libnginx-mod-rtmp (and, for --callback-delay-ms, the echo module) when
# missing. The machine's open-files cap (20000 here) bounds the idle and storm sizes: every
# connection is a descriptor in the server and in the load client.
#
# On a 2-core machine the load client and the server share the CPUs: the server numbers that
# count are its CPU seconds, not wall-clock rates. Run it more than once: the machine is shared.

set -euo pipefail

players=2000
seconds=10
idle=15000
storm=2000
delay_ms=0
only=fanout,idle,storm
merge_ms=
storm_runs=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --players) players=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --idle) idle=$2; shift 2 ;;
        --storm) storm=$2; shift 2 ;;
        --callback-delay-ms) delay_ms=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --merge-write-ms) merge_ms=$2; shift 2 ;;
        --storm-runs) storm_runs=$2; shift 2 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench-vs-nginx: unknown option $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
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

echo "bench-vs-nginx: cargo build --release --bins" >&2
(cd "$root" && cargo build --release --bins --quiet)
load=$root/target/release/ringcast-load

work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-vs-nginx.XXXXXX")
pids=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
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

# Starts a server; sets server_pid (the process doing the work) and server_port.
start_server() {
    local kind=$1 callbacks=$2
    server_port=$(free_port)
    if [[ $kind == ringcast ]]; then
        local args=(--rtmp-listen "127.0.0.1:$server_port" --shards 1 --http-listen 127.0.0.1:0
            --rtsp-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --log-level warn)
        [[ $callbacks == yes ]] && args+=(--on-play "$hook_url")
        if [[ -n $merge_ms ]]; then
            printf 'merge_write_ms = %d\n' "$merge_ms" >"$work/ringcast.toml"
            args+=(--config "$work/ringcast.toml")
        fi
        "$root/target/release/ringcast" "${args[@]}" 2>"$work/ringcast.log" &
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
        sleep 0.1
    done
    echo "bench-vs-nginx: $kind did not start" >&2
    return 1
}

stop_server() {
    local pid
    for pid in "${pids[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
    pids=("${pids[0]}")
    sleep 0.5
}

# Runs ringcast-load against the current server; prints "cpu_s rss0_kib peak_kib json_path".
run_load() {
    local name=$1
    shift
    local before rss0 after rss1
    before=$(cpu_ticks "$server_pid")
    rss0=$(rss_kib "$server_pid")
    "$load" --url "rtmp://127.0.0.1:$server_port/live/bench" --json-out "$work/$name.json" "$@" >"$work/$name.txt" 2>&1 || true
    after=$(cpu_ticks "$server_pid")
    rss1=$(hwm_kib "$server_pid")
    awk -v a="$after" -v b="$before" -v hz="$hz" 'BEGIN { printf "%.2f", (a - b) / hz }'
    echo " $rss0 $rss1 $work/$name.json"
}

# The median of its arguments (the lower middle one for an even count); empty for none.
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

json() { python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    d = d.get(key) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"; }

declare -A result
for kind in ringcast nginx; do
    if [[ $only == *fanout* ]]; then
        start_server "$kind" no
        read -r cpu _ _ file < <(run_load "$kind-fanout" play -n "$players" --duration "$seconds" --publish --threads 2)
        bytes=$(json "$file" play.bytes)
        result[$kind.fanout.cpu]=$cpu
        result[$kind.fanout.gbit]=$(awk -v b="${bytes:-0}" 'BEGIN { printf "%.2f", b * 8 / 1e9 }')
        result[$kind.fanout.gbit_per_cpu]=$(awk -v b="${bytes:-0}" -v c="$cpu" 'BEGIN { printf "%.2f", (c > 0 ? b * 8 / 1e9 / c : 0) }')
        playing=$(json "$file" play.playing)
        drops=$(json "$file" play.with_drops)
        gone=$(json "$file" play.disconnected)
        result[$kind.fanout.clean]=$(( ${playing:-0} - ${drops:-0} - ${gone:-0} ))
        result[$kind.fanout.lag99]=$(json "$file" play.lag.p99_ms)
        stop_server
    fi
    if [[ $only == *idle* ]]; then
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

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
echo
echo "== ringcast (merge_write_ms = ${merge_ms:-default}) vs nginx-rtmp ($(nproc) CPUs shared with the load client; one shard / one worker) =="
printf '%-44s %14s %14s %10s\n' "measure" "ringcast" "nginx-rtmp" "ratio"
row() { printf '%-44s %14s %14s %10s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
if [[ $only == *fanout* ]]; then
    row "fanout: server CPU-s ($players players, ${seconds}s)" "${result[ringcast.fanout.cpu]}" "${result[nginx.fanout.cpu]}"
    row "fanout: Gbit delivered" "${result[ringcast.fanout.gbit]}" "${result[nginx.fanout.gbit]}"
    row "fanout: Gbit per server CPU-second" "${result[ringcast.fanout.gbit_per_cpu]}" "${result[nginx.fanout.gbit_per_cpu]}"
    row "fanout: players held without drops" "${result[ringcast.fanout.clean]}" "${result[nginx.fanout.clean]}"
    row "fanout: lag p99 (ms)" "${result[ringcast.fanout.lag99]}" "${result[nginx.fanout.lag99]}"
fi
if [[ $only == *idle* ]]; then
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
