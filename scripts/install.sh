#!/usr/bin/env bash
# Installs ringcast as a systemd service: the binary, the example configuration and the unit.
# See docs/production.md. Safe to run again (an upgrade); never overwrites a configuration.
#
#   scripts/install.sh                  build the release binary with cargo, then install
#   scripts/install.sh --binary PATH    install PATH instead of building
#   scripts/install.sh --uninstall      remove the binary and the unit; keep config and state
#   scripts/install.sh --purge          remove configuration and state as well
#
# RINGCAST_ROOT=DIR installs under DIR instead of / (packaging, tests) and leaves systemd alone.
set -euo pipefail

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

say() {
    echo "ringcast: $*"
}

mode=install
purge=0
binary=
while [ $# -gt 0 ]; do
    case "$1" in
    --binary)
        [ $# -ge 2 ] || die "--binary needs a path"
        binary=$2
        shift 2
        ;;
    --binary=*)
        binary=${1#--binary=}
        shift
        ;;
    --uninstall)
        mode=uninstall
        shift
        ;;
    --purge)
        mode=uninstall
        purge=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

root=${RINGCAST_ROOT:-}
root=${root%/}
bin_path=$root/usr/local/bin/ringcast
conf_dir=$root/etc/ringcast
conf=$conf_dir/ringcast.toml
unit=$root/etc/systemd/system/ringcast.service
doc_dir=$root/usr/local/share/doc/ringcast
# DynamicUser= keeps the real directory under private/ and links /var/lib/ringcast to it.
state_dirs=("$root/var/lib/ringcast" "$root/var/lib/private/ringcast")

# Only a live system is told about the unit: not a staging root, not a container without
# systemd as PID 1 (/run/systemd/system exists exactly when systemd runs, per sd_booted(3)).
systemd_live=0
if [ -z "$root" ]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemd_live=1
    fi
fi

need_writable() {
    local dir=$1
    while [ ! -e "$dir" ]; do
        dir=$(dirname "$dir")
    done
    [ -w "$dir" ] || die "cannot write to $dir: run as root (sudo), or set RINGCAST_ROOT"
}

# Copies $1 to $2 with mode $3 through a temporary file and a rename, so a running ringcast
# keeps its old binary (no ETXTBSY) and a reader never sees half a file. Says what changed.
put() {
    local src=$1 dest=$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
        say "unchanged $dest"
        return
    fi
    mkdir -p "$(dirname "$dest")"
    local tmp
    tmp=$(mktemp "$dest.XXXXXX")
    install -m "$mode" "$src" "$tmp"
    mv -f "$tmp" "$dest"
    say "installed $dest"
}

install_all() {
    if [ -z "$binary" ]; then
        command -v cargo >/dev/null ||
            die "cargo not found (sudo resets PATH): build first with 'cargo build --release', then run: sudo $0 --binary target/release/ringcast"
        say "building the release binary"
        (cd "$repo" && cargo build --release --locked)
        binary=${CARGO_TARGET_DIR:-$repo/target}/release/ringcast
    fi
    if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
        die "not an executable file: $binary"
    fi

    need_writable "$bin_path"
    need_writable "$conf_dir"
    need_writable "$unit"

    put "$binary" "$bin_path" 0755

    # The example is refreshed on every install (it documents the installed version's keys);
    # the configuration itself is the operator's and is created only when missing.
    put "$repo/ringcast.example.toml" "$conf.example" 0644
    if [ -e "$conf" ]; then
        say "kept existing $conf (the new example is $conf.example)"
    else
        put "$repo/ringcast.example.toml" "$conf" 0644
    fi

    put "$repo/scripts/ringcast.service" "$unit" 0644
    if [ -f "$repo/docs/production.md" ]; then
        put "$repo/docs/production.md" "$doc_dir/production.md" 0644
    fi

    local config_ok=1
    if ! check=$("$bin_path" --config "$conf" --check 2>&1); then
        config_ok=0
        echo "install.sh: $conf does not pass this version's check:" >&2
        echo "$check" >&2
    fi

    if [ "$systemd_live" = 1 ]; then
        systemctl daemon-reload
        if systemctl is-active --quiet ringcast; then
            say "running; restart it to use the new binary: systemctl restart ringcast"
        else
            say "start it now and at boot: systemctl enable --now ringcast"
        fi
    elif [ -n "$root" ]; then
        say "installed under RINGCAST_ROOT=$root; systemd not touched"
    else
        say "systemd is not running here (a container?): skipped systemctl daemon-reload"
    fi

    [ "$config_ok" = 1 ] || die "installed, but fix $conf before starting ringcast"
}

uninstall_all() {
    need_writable "$bin_path"
    need_writable "$unit"
    if [ "$systemd_live" = 1 ] && [ -e "$unit" ]; then
        # Stop before the unit file goes, or systemd is left with a running orphan.
        systemctl disable --now ringcast || true
    fi
    local path
    for path in "$bin_path" "$unit"; do
        if [ -e "$path" ]; then
            rm -f "$path"
            say "removed $path"
        fi
    done
    if [ -d "$doc_dir" ]; then
        rm -rf "$doc_dir"
        say "removed $doc_dir"
    fi
    if [ "$systemd_live" = 1 ]; then
        systemctl daemon-reload
    fi

    if [ "$purge" = 1 ]; then
        for path in "$conf_dir" "${state_dirs[@]}"; do
            if [ -e "$path" ] || [ -L "$path" ]; then
                rm -rf "$path"
                say "removed $path"
            fi
        done
    else
        say "kept $conf_dir and ${state_dirs[0]} (--purge removes them)"
    fi
}

case "$mode" in
install) install_all ;;
uninstall) uninstall_all ;;
esac
