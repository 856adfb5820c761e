# shellcheck shell=bash
# Shared by scripts/loadtest.sh and scripts/bench-vs-nginx.sh: what a process has spent.

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
