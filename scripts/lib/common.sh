# Shared settings and helpers for scripts/install, devstack, test and demo.
# Sourced, not executed. Callers set `set -euo pipefail` themselves.

DJOB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

KAFKA_VERSION=4.1.1
FERRETDB_VERSION=v1.24.2

DJOB_CACHE="${DJOB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/djob}"
KAFKA_HOME="$DJOB_CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
FERRETDB_BIN="$DJOB_CACHE/ferretdb-$FERRETDB_VERSION/ferretdb"

DJOB_DEVSTACK_DIR="${DJOB_DEVSTACK_DIR:-$DJOB_ROOT/.devstack}"
# Not DJOB_KAFKA_*: libdjob reads DJOB_KAFKA_<PROPERTY> as a librdkafka property.
DJOB_DEVSTACK_KAFKA_PORT="${DJOB_DEVSTACK_KAFKA_PORT:-9092}"
DJOB_DEVSTACK_KAFKA_CONTROLLER_PORT="${DJOB_DEVSTACK_KAFKA_CONTROLLER_PORT:-9093}"
DJOB_DEVSTACK_MONGO_PORT="${DJOB_DEVSTACK_MONGO_PORT:-27017}"

# Go lives outside PATH on some machines.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    PATH="$PATH:/usr/local/go/bin"
fi

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_green=$'\e[32m' _c_off=$'\e[0m'
else
    _c_bold='' _c_red='' _c_green='' _c_off=''
fi

# Prefix for messages: the calling script's name.
_me="$(basename "$0")"

say() { printf '%s==> %s%s\n' "$_c_bold" "$*" "$_c_off"; }
ok() { printf '%s  ok%s %s\n' "$_c_green" "$_c_off" "$*"; }
warn() { printf '%s: warning: %s\n' "$_me" "$*" >&2; }
die() {
    printf '%s%s: error: %s%s\n' "$_c_red" "$_me" "$*" "$_c_off" >&2
    exit 1
}

# Milliseconds since the epoch, for phase timings.
now_ms() { date +%s%3N; }

# "1.234s" from two now_ms values.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fs", (b - a) / 1000 }'; }

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# Bring the dev stack up, remembering in STACK_STARTED which services this
# call started, and export the variables of .devstack/env. Pair it with
# stack_down_started (in an EXIT trap) so a stack that was already up stays up.
STACK_STARTED=()
stack_up_remember() {
    local s
    for s in kafka mongo; do
        "$DJOB_ROOT/scripts/devstack" status "$s" >/dev/null 2>&1 || STACK_STARTED+=("$s")
    done
    [ ${#STACK_STARTED[@]} -gt 0 ] || echo "dev stack already up: it stays up afterwards"
    "$DJOB_ROOT/scripts/devstack" up || return 1
    set -a
    # shellcheck source=/dev/null
    source "$DJOB_DEVSTACK_DIR/env"
    set +a
}

stack_down_started() {
    [ ${#STACK_STARTED[@]} -gt 0 ] || return 0
    say "devstack: stopping what this run started (${STACK_STARTED[*]})"
    local s
    for s in "${STACK_STARTED[@]}"; do
        "$DJOB_ROOT/scripts/devstack" stop "$s" || true
    done
    STACK_STARTED=()
}
