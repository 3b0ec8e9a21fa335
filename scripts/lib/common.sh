# Shared settings and helpers for scripts/install, devstack, test and demo.
# Sourced, not executed. Callers set `set -euo pipefail` themselves.

DJOB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

KAFKA_VERSION=4.1.1
FERRETDB_VERSION=v1.24.2
MJS_VERSION=1.47.0 # mongo-java-server

DJOB_CACHE="${DJOB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/djob}"
KAFKA_HOME="$DJOB_CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
FERRETDB_BIN="$DJOB_CACHE/ferretdb-$FERRETDB_VERSION/ferretdb"
MJS_HOME="$DJOB_CACHE/mongo-java-server-$MJS_VERSION"
MJS_LIBS="$MJS_HOME/libs"
MJS_CLASSES="$MJS_HOME/classes"

DJOB_DEVSTACK_DIR="${DJOB_DEVSTACK_DIR:-$DJOB_ROOT/.devstack}"
# Not DJOB_KAFKA_*: libdjob reads DJOB_KAFKA_<PROPERTY> as a librdkafka property.
DJOB_DEVSTACK_KAFKA_PORT="${DJOB_DEVSTACK_KAFKA_PORT:-9092}"
DJOB_DEVSTACK_KAFKA_CONTROLLER_PORT="${DJOB_DEVSTACK_KAFKA_CONTROLLER_PORT:-9093}"
DJOB_DEVSTACK_MONGO_PORT="${DJOB_DEVSTACK_MONGO_PORT:-27017}"
# The server behind the dev stack's `mongo` service: mongo-java-server or ferretdb.
DJOB_DEVSTACK_MONGO="${DJOB_DEVSTACK_MONGO:-mongo-java-server}"
# Where scripts/test runs FerretDB beside the default server.
DJOB_DEVSTACK_FERRETDB_PORT="${DJOB_DEVSTACK_FERRETDB_PORT:-27018}"

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
# Entries are "kafka" or "mongo:<server>" (mongo-java-server, ferretdb).
STACK_STARTED=()
stack_up_remember() {
    local s
    "$DJOB_ROOT/scripts/devstack" status kafka >/dev/null 2>&1 || STACK_STARTED+=(kafka)
    "$DJOB_ROOT/scripts/devstack" status mongo >/dev/null 2>&1 ||
        STACK_STARTED+=("mongo:$DJOB_DEVSTACK_MONGO")
    [ ${#STACK_STARTED[@]} -gt 0 ] || echo "dev stack already up: it stays up afterwards"
    "$DJOB_ROOT/scripts/devstack" up || return 1
    set -a
    # shellcheck source=/dev/null
    source "$DJOB_DEVSTACK_DIR/env"
    set +a
}

# Start one more MongoDB server of the dev stack beside the one `up` started
# (a kind of its own, on a port of its own), remembering it in STACK_STARTED
# when this call started it. .devstack/env is left alone.
# usage: stack_mongo_up_remember SERVER PORT
stack_mongo_up_remember() {
    local kind="$1" port="$2"
    if ! DJOB_DEVSTACK_MONGO="$kind" DJOB_DEVSTACK_MONGO_PORT="$port" \
        "$DJOB_ROOT/scripts/devstack" status mongo >/dev/null 2>&1; then
        STACK_STARTED+=("mongo:$kind")
    fi
    DJOB_DEVSTACK_MONGO="$kind" DJOB_DEVSTACK_MONGO_PORT="$port" \
        "$DJOB_ROOT/scripts/devstack" start mongo
}

# Stop one entry of STACK_STARTED.
_stack_stop() {
    case "$1" in
    mongo:*) DJOB_DEVSTACK_MONGO="${1#mongo:}" "$DJOB_ROOT/scripts/devstack" stop mongo || true ;;
    *) "$DJOB_ROOT/scripts/devstack" stop "$1" || true ;;
    esac
}

# Stop one server (an entry such as mongo:ferretdb) if this run started it,
# and forget it.
stack_stop_started() {
    local s rest=()
    for s in "${STACK_STARTED[@]}"; do
        if [ "$s" = "$1" ]; then
            _stack_stop "$s"
        else
            rest+=("$s")
        fi
    done
    STACK_STARTED=("${rest[@]}")
}

stack_down_started() {
    [ ${#STACK_STARTED[@]} -gt 0 ] || return 0
    say "devstack: stopping what this run started (${STACK_STARTED[*]})"
    local s
    for s in "${STACK_STARTED[@]}"; do
        _stack_stop "$s"
    done
    STACK_STARTED=()
}
