#!/usr/bin/env bash
# Instructions per proxied call (callgrind), for bench/PROFILE.md: stable where wall-clock
# numbers are not (a shared or small machine).
#
# usage: bench/callgrind.sh [stdio|http|floor] [--audit true|false] [--concurrency C]
#                           [--secs S] [--cache-sim] [--out FILE] [--no-build]
#
# Runs `fentaris serve` (release) under valgrind with one upstream (the test upstream over
# stdio, or over streamable HTTP), warms it up with 3 s of `tools/call echo`, zeroes the
# counters, runs S seconds more (default 6) at concurrency C (default 16), dumps, and prints
# the instructions per call and the top inclusive costs. `floor` runs examples/bare_proxy.rs
# (hyper's HTTP/1 server and client alone) instead of Fentaris, in front of the HTTP test
# upstream; --audit does not apply to it. The callgrind file goes to --out (default: a
# temporary file, deleted). Needs valgrind (callgrind_control, callgrind_annotate). Under
# valgrind the CPU has no SHA extensions: SHA-256 (audit chain, API-key digest) costs about
# ten times what it does natively. --cache-sim adds valgrind's cache simulation (32 KiB L1, a
# 1 MiB last level like this machine's L2 per core) and prints L1 and last-level misses per
# call (bench/PROFILE.md, round seven).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
KIND=stdio; AUDIT=true; C=16; SECS=6; OUTFILE=""; BUILD=1; CACHE=()
while [ $# -gt 0 ]; do
    case "$1" in
        stdio|http|floor) KIND=$1 ;;
        --audit) AUDIT=$2; shift ;;
        --concurrency) C=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --out) OUTFILE=$2; shift ;;
        --cache-sim) CACHE=(--cache-sim=yes --D1=32768,8,64 --LL=1048576,16,64) ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "callgrind.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for t in valgrind callgrind_control callgrind_annotate; do
    command -v "$t" > /dev/null || { echo "callgrind.sh: $t is not installed" >&2; exit 1; }
done
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet -p fentaris --bin fentaris --example test_upstream --example loadgen --example bare_proxy)
fi
FENTARIS=${FENTARIS_BIN:-$TARGET/release/fentaris}
UPSTREAM=$TARGET/release/examples/test_upstream
LOADGEN=$TARGET/release/examples/loadgen
BARE_PROXY=$TARGET/release/examples/bare_proxy

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fentaris-callgrind.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

UP_PORT=$(free_port); PORT=$(free_port); ADMIN=$(free_port)
KEY=bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
if [ "$KIND" != stdio ]; then
    "$UPSTREAM" --http "127.0.0.1:$UP_PORT" --threads 1 > "$WORK/upstream.log" 2>&1 &
    PIDS+=("$!")
    SERVERS='[ { "name": "up", "transport": { "streamableHttp": { "url": "http://127.0.0.1:'$UP_PORT'/mcp" } } } ]'
else
    SERVERS='[ { "name": "up", "transport": { "stdio": { "command": "'"$UPSTREAM"'", "args": ["--stdio"] } } } ]'
fi
VALGRIND=(valgrind --tool=callgrind ${CACHE[@]+"${CACHE[@]}"} --callgrind-out-file="$WORK/cg.%p")
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
admin_ready() {
    local code
    code=$( (exec 3<>"/dev/tcp/127.0.0.1/$ADMIN" && printf 'GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 && read -r -t 2 _ c _ <&3 && echo "$c") 2>/dev/null || true)
    [ "$code" = 200 ]
}
wait_ready() { # wait_ready WHAT PROBE: until PROBE succeeds (2 minutes at most) or $PID exits
    local _
    for _ in $(seq 1200); do
        kill -0 "$PID" 2>/dev/null || { cat "$WORK/fentaris.log" >&2; exit 1; }
        "$2" && return 0
        sleep 0.1
    done
    echo "callgrind.sh: $1 did not become ready" >&2
    exit 1
}
if [ "$KIND" = floor ]; then
    "${VALGRIND[@]}" "$BARE_PROXY" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UP_PORT" \
        > "$WORK/fentaris.log" 2>&1 < /dev/null &
    PID=$!
    PIDS+=("$PID")
    wait_ready bare_proxy port_open
    TOOL=echo; AUTH=()
else
    mkdir -p "$WORK/.fentaris" "$WORK/xdg"
    cat > "$WORK/.fentaris/config.json" <<EOF
{ "listen": "127.0.0.1:$PORT", "adminListen": "127.0.0.1:$ADMIN", "autoLog": $AUDIT, "servers": $SERVERS,
  "policies": [ { "name": "bench", "rules": [ { "mcp": "*", "allow": "*" } ] } ],
  "groups": [ { "id": "bench", "users": [ { "id": "bench", "apiKeys": [ { "env": "BENCH_API_KEY" } ] } ], "policy": "bench" } ] }
EOF
    (cd "$WORK" && exec env -u FENTARIS_CONFIG -u FENTARIS_VAULT_KEY -u FENTARIS_VAULT_KEY_FILE \
        XDG_CONFIG_HOME="$WORK/xdg" BENCH_API_KEY="$KEY" RUST_LOG=warn \
        "${VALGRIND[@]}" "$FENTARIS" serve --config "$WORK/.fentaris/config.json" > "$WORK/fentaris.log" 2>&1 < /dev/null) &
    PID=$!
    PIDS+=("$PID")
    wait_ready fentaris admin_ready
    TOOL=up__echo; AUTH=(--header "x-fentaris-api-key: $KEY")
fi
load() {
    "$LOADGEN" --url "http://127.0.0.1:$PORT/mcp" ${AUTH[@]+"${AUTH[@]}"} \
        --concurrency "$C" --tool "$TOOL" --threads 1 --warmup 0s --duration "$1"
}
load 3s > /dev/null
callgrind_control -z "$PID" > /dev/null
out=$(load "${SECS}s")
callgrind_control -d "$PID" > /dev/null
sleep 1
file=$(ls -t "$WORK"/cg.* | head -1)
calls=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_total"])')
ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$file")
[ "$KIND" = floor ] && what="hyper floor (bare_proxy), HTTP upstream" || what="$KIND upstream, autoLog $AUDIT"
echo "$what, c=$C: $calls calls, $ir instructions, $((ir / calls)) per call"
[ -n "$OUTFILE" ] && cp "$file" "$OUTFILE"
if [ ${#CACHE[@]} -gt 0 ]; then
    # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    awk -v n="$calls" '/^(summary|totals):/ { printf "per call: L1 data misses %.0f, L1 instruction misses %.0f, last-level misses %.0f (data reads %.0f, data writes %.0f, instructions %.0f)\n", ($6+$7)/n, $5/n, ($8+$9+$10)/n, $9/n, $10/n, $8/n; exit }' "$file"
fi
if [ "$KIND" = floor ]; then
    pattern='bare_proxy::|hyper::|httparse::|http::header::|tokio::|mi_|memcpy'
else
    pattern='fentaris::|sha2::|mi_|memcpy|serde_json::(de|ser)::'
fi
callgrind_annotate --inclusive=yes --auto=no "$file" 2>/dev/null | grep -E "$pattern" | head -40 || true
exit 0
