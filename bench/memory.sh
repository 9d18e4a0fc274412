#!/usr/bin/env bash
# Fentaris' memory (RSS) with 3 stdio upstreams: idle, peak under load at concurrency 64
# (spread over the 3 upstreams), and with N idle sessions open (default 10,000).
#
# usage: bench/memory.sh [--sessions N] [--concurrency C] [--duration SECS] [--no-build]
#                        [--audit true|false]
#
# Release build, audit log on by default (`autoLog`), the test upstream of
# examples/test_upstream.rs, load from examples/loadgen.rs; everything on 127.0.0.1, and every
# process started here is stopped by its id. Prints a markdown summary; nothing is asserted.
# MEMORY_DEBUG=1: also the anonymous/file split of the RSS (smaps_rollup), idle and at peak.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SESSIONS=10000
CONCURRENCY=64
DURATION=3
BUILD=1
AUDIT=true
while [ $# -gt 0 ]; do
    case "$1" in
        --sessions) SESSIONS=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --no-build) BUILD=0 ;;
        --audit) AUDIT=$2; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "memory.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
log() { echo "memory.sh: $*" >&2; }

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet -p fentaris --bin fentaris --example test_upstream --example loadgen)
fi
FENTARIS=${FENTARIS_BIN:-$TARGET/release/fentaris}
UPSTREAM=$TARGET/release/examples/test_upstream
LOADGEN=$TARGET/release/examples/loadgen
for b in "$FENTARIS" "$UPSTREAM" "$LOADGEN"; do
    [ -x "$b" ] || { log "missing $b (run without --no-build)"; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fentaris-memory.XXXXXX")
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        kill -TERM -- "-$PID" 2>/dev/null || kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

PORT=$(free_port); ADMIN=$(free_port)
KEY=bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
servers=''
for i in 1 2 3; do
    servers+='{ "name": "up'$i'", "transport": { "stdio": { "command": "'"$UPSTREAM"'", "args": ["--stdio"] } } }'
    [ $i -lt 3 ] && servers+=', '
done
mkdir -p "$WORK/.fentaris" "$WORK/xdg"
cat > "$WORK/.fentaris/config.json" <<EOF
{
  "listen": "127.0.0.1:$PORT",
  "adminListen": "127.0.0.1:$ADMIN",
  "autoLog": $AUDIT,
  "limits": { "maxSessions": $((SESSIONS + 1000)), "maxSessionsPerUser": $((SESSIONS + 1000)) },
  "servers": [ $servers ],
  "policies": [ { "name": "bench", "rules": [ { "mcp": "*", "allow": "*" } ] } ],
  "groups": [ { "id": "bench", "users": [ { "id": "bench", "apiKeys": [ { "env": "BENCH_API_KEY" } ] } ], "policy": "bench" } ]
}
EOF
(cd "$WORK" && exec setsid env -u FENTARIS_CONFIG -u FENTARIS_VAULT_KEY -u FENTARIS_VAULT_KEY_FILE \
    XDG_CONFIG_HOME="$WORK/xdg" BENCH_API_KEY="$KEY" RUST_LOG=warn \
    "$FENTARIS" serve --config "$WORK/.fentaris/config.json" > "$WORK/fentaris.log" 2>&1 < /dev/null) &
PID=$!
ready=0
for _ in $(seq 600); do
    kill -0 "$PID" 2>/dev/null || { log "fentaris exited; its log:"; cat "$WORK/fentaris.log" >&2; exit 1; }
    code=$( (exec 3<>"/dev/tcp/127.0.0.1/$ADMIN" && printf 'GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 && read -r -t 2 _ c _ <&3 && echo "$c") 2>/dev/null || true)
    [ "$code" = 200 ] && { ready=1; break; }
    sleep 0.1
done
[ "$ready" = 1 ] || { log "fentaris did not become ready"; exit 1; }
sleep 1
idle=$(kb "$PID" VmRSS)
[ -n "${MEMORY_DEBUG:-}" ] && grep -E "Rss|Anon|File" "/proc/$PID/smaps_rollup" >&2

# Load: CONCURRENCY sessions spread over the three upstreams, at once.
echo 5 > "/proc/$PID/clear_refs" 2>/dev/null || true
per=$(( (CONCURRENCY + 2) / 3 ))
lpids=()
for i in 1 2 3; do
    c=$per; [ $i = 3 ] && c=$((CONCURRENCY - 2 * per))
    "$LOADGEN" --url "http://127.0.0.1:$PORT/mcp" --header "x-fentaris-api-key: $KEY" \
        --concurrency "$c" --duration "${DURATION}s" --warmup 0.5s --tool "up${i}__echo" \
        --threads 1 > "$WORK/load$i.json" &
    lpids+=("$!")
done
for p in "${lpids[@]}"; do wait "$p"; done
peak=$(kb "$PID" VmHWM)
[ -n "${MEMORY_DEBUG:-}" ] && grep -E "Rss|Anon|File" "/proc/$PID/smaps_rollup" >&2
calls=$(python3 -c 'import json,sys; print(sum(json.load(open(f)).get("calls", 0) for f in sys.argv[1:]))' "$WORK"/load*.json)
errors=$(python3 -c 'import json,sys; print(sum(json.load(open(f)).get("errors", 0) for f in sys.argv[1:]))' "$WORK"/load*.json)
sleep 1
after_load=$(kb "$PID" VmRSS)

# Idle sessions: opened (initialize + initialized) and left open.
before=$(kb "$PID" VmRSS)
opened=$("$LOADGEN" --url "http://127.0.0.1:$PORT/mcp" --header "x-fentaris-api-key: $KEY" \
    --open-sessions "$SESSIONS" --concurrency 8)
sleep 1
with_sessions=$(kb "$PID" VmRSS)
n=$(echo "$opened" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("opened", 0))')

python3 - "$idle" "$peak" "$after_load" "$before" "$with_sessions" "$n" "$CONCURRENCY" "$calls" "$errors" "$AUDIT" <<'PY'
import sys
idle, peak, after_load, before, with_s, n, c, calls, errors, audit = sys.argv[1:]
mb = lambda k: int(k) / 1024
print(f"### Fentaris memory (3 stdio upstreams, autoLog {audit})\n")
print("| measure | RSS MB |")
print("|---|---:|")
print(f"| idle | {mb(idle):.1f} |")
print(f"| peak under load, c={c} over the 3 upstreams ({calls} calls, {errors} errors) | {mb(peak):.1f} |")
print(f"| after the load | {mb(after_load):.1f} |")
print(f"| with {int(n):,} idle sessions open | {mb(with_s):.1f} |")
if int(n):
    print(f"\nPer idle session: {(int(with_s) - int(before)) / int(n):.2f} KB "
          f"({int(n):,} opened). Targets (issue 17): under 20 MB at c={c} with 3 upstreams: "
          f"{'met' if mb(peak) < 20 else 'missed'}; {int(n):,} idle sessions under 64 MB: "
          f"{'met' if mb(with_s) < 64 else 'missed'}.")
PY
