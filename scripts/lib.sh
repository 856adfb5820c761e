# shellcheck shell=bash
# Shared by the load and bench scripts (loadtest.sh, soak.sh, bench-*.sh, callback-cache-storm.sh):
# their usage text, the open-files limit, what a process has spent, and stopping one.

# The sourcing script's usage, for -h/--help: its leading comment block (after the #! line),
# without the '# '.
print_usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

# Raises the open-files limit to the hard limit: every connection of a load run is a descriptor
# in the server and in the load client.
raise_open_files() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# A TCP port on 127.0.0.1 that is free now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as root: directly when this is root, else under sudo.
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat; the name
# before them may contain spaces, hence the cut at the last ')').
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}

# A /proc/PID/status memory field (VmRSS, VmHWM, ...) in KiB.
status_kib() {
    awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# Stops PID: SIGTERM, up to SECONDS (default 7) for a graceful exit, then SIGKILL; reaps it when
# it is this shell's child.
stop_process() {
    local pid=$1 tenths=$((${2:-7} * 10))
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 "$tenths"); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# For an EXIT trap: removes the work directory DIR, unless KEEP is 1; then says MESSAGE instead.
remove_work_dir() {
    local dir=$1 keep=$2 message=$3
    if [[ $keep == 1 ]]; then
        echo "$message" >&2
    else
        rm -rf "$dir"
    fi
}
