# Shared helpers for scripts/setup, scripts/test and scripts/demo. Source it; do not run it.
# shellcheck shell=bash

# The repository root, whatever directory the caller was started from.
SHOAL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SHOAL_ROOT

# Messages go to stderr, prefixed with the script's name.
SHOAL_SCRIPT="${SHOAL_SCRIPT:-$(basename "$0")}"
log() { printf '%s: %s\n' "$SHOAL_SCRIPT" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$SHOAL_SCRIPT" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$SHOAL_SCRIPT" "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# Seconds since the epoch with sub-second precision (for timing stages).
now() { date +%s.%N; }
# elapsed START [END]: seconds between two `now` values, one decimal.
elapsed() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }

# Plain cargo output when not on a terminal (CI logs); keep the user's choice otherwise.
if [[ ! -t 1 && -z "${CARGO_TERM_COLOR:-}" ]]; then
    export CARGO_TERM_COLOR=never
fi

# Cargo installed by rustup into the home directory is often not on PATH in a fresh shell.
if ! have cargo && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    export PATH
fi

# bounded SECONDS COMMAND...: run COMMAND under `timeout`, which kills COMMAND's whole
# process group when time is up (exit 124, or 137 if it had to use KILL). `timeout` runs
# in its own process group, so a terminal's Ctrl-C does not reach it: it is started in the
# background and waited for, so the caller's INT/TERM traps run at once and can call
# stop_bounded. Returns COMMAND's status. stdin is /dev/null.
BOUNDED_PID=""
bounded() {
    local limit="$1" rc=0
    shift
    timeout --kill-after=30 "$limit" "$@" </dev/null &
    BOUNDED_PID=$!
    wait "$BOUNDED_PID" || rc=$?
    BOUNDED_PID=""
    return "$rc"
}

# Stop the command `bounded` is running, if any (timeout passes TERM on to it).
stop_bounded() {
    if [[ -n "$BOUNDED_PID" ]] && kill -0 "$BOUNDED_PID" 2>/dev/null; then
        kill -TERM "$BOUNDED_PID" 2>/dev/null || true
        wait "$BOUNDED_PID" 2>/dev/null || true
    fi
    BOUNDED_PID=""
}
