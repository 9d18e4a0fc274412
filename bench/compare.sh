#!/usr/bin/env bash
# Compare Fentaris with the test upstream directly and with peer bridges, on this machine.
#
# usage: bench/compare.sh [--quick] [--duration SECS] [--warmup SECS] [--concurrency "1 16 64"]
#                         [--sessions N] [--no-build] [--no-peers] [--pin] [--out DIR]
#                         [--profile release|dev|NAME] [--rounds N] [--only "PATH..."]
#
#   (a) direct          the test upstream over streamable HTTP (examples/test_upstream.rs)
#   (b) fentaris-stdio  Fentaris (release, HTTP downstream, /mcp) -> test upstream over stdio
#   (c) fentaris-http   Fentaris -> the same HTTP test upstream as (a)
#       each with autoLog off and on ("+log")
#   (d) supergateway    supergateway (npm, stateful streamableHttp) -> test upstream over stdio
#       mcp-proxy       mcp-proxy (PyPI, streamable HTTP at /mcp) -> test upstream over stdio
#   (e) nginx           a plain reverse proxy (nginx, one worker, keep-alive to the upstream, no
#                       auth, policy or audit) in front of (a): what any proxy can reach here
#   (f) hyper-floor     examples/bare_proxy.rs in front of (a): hyper's HTTP/1 server and client on
#                       one runtime thread (mimalloc), bodies passed through, none of Fentaris' own
#                       work (JSON, auth, policy, audit): what its stack costs before it does any
# Then Fentaris' idle RSS with 3 upstreams and its RSS growth per idle session.
#
# Load: examples/loadgen.rs, one MCP session per connection, sequential tools/call `echo`.
# Durations default to 5 s per cell (1 s warm-up); --quick: 1 s (0.3 s warm-up), for CI.
# --pin (2 CPUs or more): the load generator and the HTTP upstream run on CPU 0, every proxy
# (and its stdio child) on CPU 1, as when a proxy has a core of its own; without it all
# processes share all CPUs.
# Peers are installed (pinned) into bench/.peers (override: BENCH_PEERS_DIR); when that fails
# (no network), the script says so and goes on without them. Nothing here asserts timings.
# Every server is started before the first cell and runs (idle between its cells) until the
# last; the load generator ends its sessions (DELETE) after each cell.
# --rounds N (default 1): the cells run N times round-robin (each round: every concurrency, and
# at each every path in turn, starting one path later each round), so a ratio compares cells
# at most one concurrency's worth of cells apart (~40 s by default) instead of minutes. The
# table gives medians over the rounds (errors: their sum; peak RSS: round 1's); a ratio is the
# median of the per-round ratios, with their range. Use it on a noisy machine, whose speed
# drifts over the minutes a run takes.
# --only "PATH...": measure only these paths (direct, fentaris-stdio, fentaris-http,
# fentaris-stdio+log, fentaris-http+log, nginx, hyper-floor, supergateway, mcp-proxy); the others
# are neither installed nor started. Ratios to direct (or supergateway) need it among them.
# --profile: the cargo profile Fentaris and the load tools are built with (default release).
# CI's smoke uses dev (already built by `cargo test`): it checks every path runs, and a dev
# build's numbers are not results (the table says so).
# Output: a markdown table on stdout; raw data in --out DIR (default bench/out).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PEERS=${BENCH_PEERS_DIR:-$ROOT/bench/.peers}
SUPERGATEWAY_VERSION=4.0.0
MCP_PROXY_VERSION=0.13.0

DURATION=5
WARMUP=1
CONCURRENCY="1 16 64"
SESSIONS=1000
BUILD=1
USE_PEERS=1
PIN=0
OUT=$ROOT/bench/out
PROFILE=release
ROUNDS=1
ONLY=""
ONLY_SET=0
LOADGEN_THREADS=${LOADGEN_THREADS:-1}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) DURATION=1; WARMUP=0.3 ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --sessions) SESSIONS=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-peers) USE_PEERS=0 ;;
        --pin) PIN=1 ;;
        --out) OUT=$2; shift ;;
        --profile) PROFILE=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --only) ONLY=$2; ONLY_SET=1; shift ;;
        -h|--help) sed -n '2,42p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds takes a whole number of at least 1" >&2; exit 2; }
ONLY=$(echo $ONLY) # words separated by single spaces, as wanted() matches them
if [ "$ONLY_SET" = 1 ] && [ -z "$ONLY" ]; then
    echo "compare.sh: --only takes the paths to measure (at least one)" >&2; exit 2
fi
PATHS="direct fentaris-stdio fentaris-http fentaris-stdio+log fentaris-http+log nginx hyper-floor supergateway mcp-proxy"
for p in $ONLY; do
    case " $PATHS " in
        *" $p "*) ;;
        *) echo "compare.sh: --only: unknown path $p (${PATHS// /, })" >&2; exit 2 ;;
    esac
done

log() { echo "compare.sh: $*" >&2; }
wanted() { # wanted LABEL: whether --only (if given) names it
    [ -z "$ONLY" ] && return 0
    case " $ONLY " in *" $1 "*) return 0 ;; esac
    return 1
}

# CPU placement (--pin): AS_CLIENT for the load generator and the HTTP upstream, AS_PROXY for
# the proxies. Empty (no placement) without --pin.
AS_CLIENT=()
AS_PROXY=()
if [ "$PIN" = 1 ]; then
    if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
        AS_CLIENT=(taskset -c 0)
        AS_PROXY=(taskset -c 1)
    else
        log "--pin needs 2 CPUs and taskset; running unpinned"
        PIN=0
    fi
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fentaris-bench.XXXXXX")
CELLS=$OUT/cells.tsv
MEM=$OUT/memory.tsv
: > "$CELLS"
: > "$MEM"

# --- processes we start: each in its own process group, stopped by its id --------------------
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    done
    sleep 0.3
    for p in "${PIDS[@]}"; do
        kill -KILL -- "-$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # start NAME CMD... ; sets STARTED_PID
    local name=$1; shift
    setsid "$@" > "$OUT/$name.log" 2>&1 < /dev/null &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

stop() { # stop PID: TERM the group, wait up to 5 s, then KILL
    local p=$1 i
    kill -TERM -- "-$p" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

http_status() { # http_status PORT PATH: the status of GET http://127.0.0.1:PORT/PATH (no curl needed)
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
        read -r -t 2 _ code _ <&3 && echo "$code"
    ) 2>/dev/null || true
}

wait_http() { # wait_http PORT PATH EXPECTED_STATUS PID [SECS]
    local port=$1 path=$2 want=$3 pid=$4 secs=${5:-60} i
    for i in $(seq $((secs * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited while starting; see its log in $OUT"
            return 1
        fi
        [ "$(http_status "$port" "$path")" = "$want" ] && return 0
        sleep 0.1
    done
    log "http://127.0.0.1:$port$path did not answer $want within ${secs}s"
    return 1
}

wait_port() { # wait_port PORT PID [SECS]
    local port=$1 pid=$2 secs=${3:-60} i
    for i in $(seq $((secs * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited while starting; see its log in $OUT"
            return 1
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    log "port $port did not open within ${secs}s"
    return 1
}

cpu_ticks() { # utime + stime of PID (clock ticks)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
status_kb() { # status_kb PID FIELD (VmRSS, VmHWM)
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}
reset_peak() { echo 5 > "/proc/$1/clear_refs" 2>/dev/null || true; }

# --- build -----------------------------------------------------------------------------------
# Cargo puts the dev profile in `debug`, every other one in a folder of its own name.
PROFILE_DIR=$PROFILE
[ "$PROFILE" = dev ] && PROFILE_DIR=debug
if [ "$BUILD" = 1 ]; then
    log "building ($PROFILE): fentaris, examples test_upstream, loadgen and bare_proxy"
    (cd "$ROOT" && cargo build --profile "$PROFILE" --quiet -p fentaris --bin fentaris --example test_upstream --example loadgen --example bare_proxy)
fi
FENTARIS=${FENTARIS_BIN:-$TARGET/$PROFILE_DIR/fentaris}
UPSTREAM=$TARGET/$PROFILE_DIR/examples/test_upstream
LOADGEN=$TARGET/$PROFILE_DIR/examples/loadgen
BARE_PROXY=$TARGET/$PROFILE_DIR/examples/bare_proxy
for b in "$FENTARIS" "$UPSTREAM" "$LOADGEN"; do
    [ -x "$b" ] || { log "missing $b (run without --no-build)"; exit 1; }
done
if wanted hyper-floor && [ ! -x "$BARE_PROXY" ]; then
    log "missing $BARE_PROXY (run without --no-build)"; exit 1
fi

# --- peers -----------------------------------------------------------------------------------
SUPERGATEWAY=""
MCP_PROXY=""
if [ "$USE_PEERS" = 1 ]; then
    mkdir -p "$PEERS"
    sg_js=$PEERS/npm/node_modules/supergateway/dist/index.js
    sg_have=$(node -p "require('$PEERS/npm/node_modules/supergateway/package.json').version" 2>/dev/null || true)
    if wanted supergateway && [ "$sg_have" != "$SUPERGATEWAY_VERSION" ]; then
        log "installing supergateway@$SUPERGATEWAY_VERSION into $PEERS/npm"
        if ! npm install --prefix "$PEERS/npm" --no-audit --no-fund --silent \
                "supergateway@$SUPERGATEWAY_VERSION" > "$OUT/npm-install.log" 2>&1; then
            log "could not install supergateway (no network?); see $OUT/npm-install.log; going on without it"
        fi
    fi
    if [ -f "$sg_js" ] && command -v node > /dev/null; then
        SUPERGATEWAY=$sg_js
    fi
    mp=$PEERS/venv/bin/mcp-proxy
    mp_have=$("$PEERS/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp-proxy"))' 2>/dev/null || true)
    if wanted mcp-proxy && [ "$mp_have" != "$MCP_PROXY_VERSION" ]; then
        log "installing mcp-proxy==$MCP_PROXY_VERSION into $PEERS/venv"
        if ! { [ -x "$PEERS/venv/bin/pip" ] || python3 -m venv "$PEERS/venv"; } > "$OUT/pip-install.log" 2>&1 \
            || ! "$PEERS/venv/bin/pip" install --quiet "mcp-proxy==$MCP_PROXY_VERSION" >> "$OUT/pip-install.log" 2>&1; then
            log "could not install mcp-proxy (no network?); see $OUT/pip-install.log; going on without it"
        fi
    fi
    [ -x "$mp" ] && MCP_PROXY=$mp
fi

# On a shared machine a compiler running beside the benchmark skews it: wait (up to
# BENCH_QUIET_WAIT seconds, default 120; 0 disables) until no rustc/cc1 process is running.
wait_quiet() {
    local max=${BENCH_QUIET_WAIT:-120} i
    for i in $(seq $((max * 2))); do
        pgrep -x 'rustc|cc1|cc1plus' > /dev/null 2>&1 || return 0
        [ "$i" = 1 ] && log "waiting for compilers on this machine to finish"
        sleep 0.5
    done
}

# --- one measurement cell --------------------------------------------------------------------
# cell ROUND PATH_LABEL URL TOOL STATS_PID CONCURRENCY [HEADER...]
cell() {
    local round=$1 label=$2 url=$3 tool=$4 pid=$5 c=$6; shift 6
    local hargs=() h
    for h in "$@"; do hargs+=(--header "$h"); done
    local t0 t1 hwm json
    wait_quiet
    [ "$pid" != 0 ] && reset_peak "$pid"
    t0=$( [ "$pid" != 0 ] && cpu_ticks "$pid" || echo 0)
    json=$("${AS_CLIENT[@]}" "$LOADGEN" --url "$url" "${hargs[@]}" --concurrency "$c" --duration "${DURATION}s" \
        --warmup "${WARMUP}s" --tool "$tool" --threads "$LOADGEN_THREADS" --timeout 30s) || {
        log "loadgen failed for $label c=$c"; json='{"calls":0,"errors":-1}'; }
    t1=$( [ "$pid" != 0 ] && cpu_ticks "$pid" || echo 0)
    hwm=$( [ "$pid" != 0 ] && status_kb "$pid" VmHWM || echo 0)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$label" "$c" "$((t1 - t0))" "$hwm" "$json" >> "$CELLS"
    log "round $round, $label c=$c: $(echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("calls_per_s"), "calls/s, p50", d.get("p50_ms"), "ms, errors", d.get("errors"))')"
}

# The paths measured, in order: every server is started before the first cell and runs until
# the last, so the rounds can take them in turn. add_path LABEL URL TOOL PID [HEADER]
P_LABEL=(); P_URL=(); P_TOOL=(); P_PID=(); P_HEADER=()
add_path() {
    P_LABEL+=("$1"); P_URL+=("$2"); P_TOOL+=("$3"); P_PID+=("$4"); P_HEADER+=("${5:-}")
}

KEY=bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
AUTH="x-fentaris-api-key: $KEY"

# fentaris_project DIR AUTOLOG SERVERS_JSON [LIMITS_JSON] -> writes DIR/.fentaris/config.json;
# sets F_PORT F_ADMIN
fentaris_project() {
    local dir=$1 autolog=$2 servers=$3 limits=${4:-'{}'}
    F_PORT=$(free_port); F_ADMIN=$(free_port)
    mkdir -p "$dir/.fentaris" "$dir/xdg"
    cat > "$dir/.fentaris/config.json" <<EOF
{
  "listen": "127.0.0.1:$F_PORT",
  "adminListen": "127.0.0.1:$F_ADMIN",
  "autoLog": $autolog,
  "limits": $limits,
  "servers": $servers,
  "policies": [ { "name": "bench", "rules": [ { "mcp": "*", "allow": "*" } ] } ],
  "groups": [ { "id": "bench", "users": [ { "id": "bench", "apiKeys": [ { "env": "BENCH_API_KEY" } ] } ], "policy": "bench" } ]
}
EOF
}

start_fentaris() { # start_fentaris NAME DIR ; sets F_PID
    local name=$1 dir=$2
    start "$name" env -u FENTARIS_CONFIG -u FENTARIS_VAULT_KEY -u FENTARIS_VAULT_KEY_FILE \
        XDG_CONFIG_HOME="$dir/xdg" BENCH_API_KEY="$KEY" RUST_LOG="${RUST_LOG:-warn}" \
        "${AS_PROXY[@]}" "$FENTARIS" serve --config "$dir/.fentaris/config.json"
    F_PID=$STARTED_PID
    wait_http "$F_ADMIN" /readyz 200 "$F_PID" 120
}

STDIO_SERVER='[ { "name": "up", "transport": { "stdio": { "command": "'"$UPSTREAM"'", "args": ["--stdio"] } } } ]'

# --- (a) direct, and the HTTP upstream shared with (c) ---------------------------------------
UP_PORT=$(free_port)
UP_PID=""
UP_URL=http://127.0.0.1:$UP_PORT/mcp
if wanted direct || wanted fentaris-http || wanted fentaris-http+log || wanted nginx || wanted hyper-floor; then
    # One runtime thread: on 2 cores a work-stealing runtime loses ~half its throughput here.
    start upstream-http "${AS_CLIENT[@]}" "$UPSTREAM" --http "127.0.0.1:$UP_PORT" --threads "${UPSTREAM_THREADS:-1}"
    UP_PID=$STARTED_PID
    wait_port "$UP_PORT" "$UP_PID"
fi
HTTP_SERVER='[ { "name": "up", "transport": { "streamableHttp": { "url": "'"$UP_URL"'" } } } ]'
wanted direct && add_path direct "$UP_URL" echo "$UP_PID"

# --- (b), (c) Fentaris, autoLog off and on ---------------------------------------------------
for autolog in false true; do
    suffix=""; [ "$autolog" = true ] && suffix="+log"
    for kind in stdio http; do
        wanted "fentaris-$kind$suffix" || continue
        dir=$WORK/fentaris-$kind-$autolog
        if [ "$kind" = stdio ]; then servers=$STDIO_SERVER; else servers=$HTTP_SERVER; fi
        # Sessions end after each cell; the cap is raised anyway, so that no round is refused.
        fentaris_project "$dir" "$autolog" "$servers" '{ "maxSessionsPerUser": 1000000, "maxSessions": 1000000 }'
        start_fentaris "fentaris-$kind$suffix" "$dir" || { log "fentaris ($kind) did not start"; stop "$F_PID"; continue; }
        add_path "fentaris-$kind$suffix" "http://127.0.0.1:$F_PORT/mcp" up__echo "$F_PID" "$AUTH"
    done
done

# --- (e) nginx: a plain reverse proxy in front of the same upstream ---------------------------
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
if [ -n "$NGINX" ] && wanted nginx; then
    port=$(free_port)
    ng=$WORK/nginx
    mkdir -p "$ng/tmp"
    cat > "$ng/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_temp_path $ng/tmp/body;
    proxy_temp_path $ng/tmp/proxy;
    fastcgi_temp_path $ng/tmp/fastcgi;
    uwsgi_temp_path $ng/tmp/uwsgi;
    scgi_temp_path $ng/tmp/scgi;
    upstream up {
        server 127.0.0.1:$UP_PORT;
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
    start nginx "${AS_PROXY[@]}" "$NGINX" -p "$ng" -c "$ng/nginx.conf"
    if wait_port "$port" "$STARTED_PID"; then
        add_path nginx "http://127.0.0.1:$port/mcp" echo "$STARTED_PID"
    else
        stop "$STARTED_PID"
    fi
elif wanted nginx; then
    log "nginx not available: the plain reverse proxy reference is skipped"
fi

# --- (f) hyper-floor: hyper's server and client alone, in front of the same upstream ----------
if wanted hyper-floor; then
    port=$(free_port)
    start hyper-floor "${AS_PROXY[@]}" "$BARE_PROXY" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$UP_PORT"
    if wait_port "$port" "$STARTED_PID"; then
        add_path hyper-floor "http://127.0.0.1:$port/mcp" echo "$STARTED_PID"
    else
        stop "$STARTED_PID"
    fi
fi

# --- (d) peers -------------------------------------------------------------------------------
if [ -n "$SUPERGATEWAY" ] && wanted supergateway; then
    port=$(free_port)
    start supergateway "${AS_PROXY[@]}" node "$SUPERGATEWAY" --stdio "$UPSTREAM --stdio" \
        --outputTransport streamableHttp --stateful --port "$port" --logLevel none
    if wait_port "$port" "$STARTED_PID"; then
        add_path supergateway "http://127.0.0.1:$port/mcp" echo "$STARTED_PID"
    else
        stop "$STARTED_PID"
    fi
elif wanted supergateway; then
    log "supergateway not available: skipped"
fi
if [ -n "$MCP_PROXY" ] && wanted mcp-proxy; then
    port=$(free_port)
    start mcp-proxy "${AS_PROXY[@]}" "$MCP_PROXY" --host 127.0.0.1 --port "$port" --log-level WARNING -- "$UPSTREAM" --stdio
    if wait_port "$port" "$STARTED_PID"; then
        add_path mcp-proxy "http://127.0.0.1:$port/mcp" echo "$STARTED_PID"
    else
        stop "$STARTED_PID"
    fi
elif wanted mcp-proxy; then
    log "mcp-proxy not available: skipped"
fi

# --- the cells: each round takes every concurrency, and at each every path in turn ----------
if [ ${#P_LABEL[@]} = 0 ]; then
    log "nothing to measure (see the messages above)"
    exit 1
fi
# Each round starts one path later, so no path is always measured first (or right after the
# same neighbour).
n=${#P_LABEL[@]}
for round in $(seq "$ROUNDS"); do
    for c in $CONCURRENCY; do
        for k in $(seq 0 $((n - 1))); do
            i=$(((k + round - 1) % n))
            hdr=(); [ -n "${P_HEADER[$i]}" ] && hdr=("${P_HEADER[$i]}")
            cell "$round" "${P_LABEL[$i]}" "${P_URL[$i]}" "${P_TOOL[$i]}" "${P_PID[$i]}" "$c" "${hdr[@]}"
        done
    done
done
for i in "${!P_PID[@]}"; do
    [ "${P_PID[$i]}" = "$UP_PID" ] || stop "${P_PID[$i]}"
done
[ -n "$UP_PID" ] && stop "$UP_PID"

# --- memory: idle with 3 upstreams, growth per idle session ----------------------------------
dir=$WORK/fentaris-memory
servers='[ '
for i in 1 2 3; do
    servers+='{ "name": "up'$i'", "transport": { "stdio": { "command": "'"$UPSTREAM"'", "args": ["--stdio"] } } }'
    [ $i -lt 3 ] && servers+=', '
done
servers+=' ]'
fentaris_project "$dir" false "$servers" '{ "maxSessionsPerUser": '"$((SESSIONS + 100))"' }'
if start_fentaris fentaris-memory "$dir"; then
    sleep 1
    idle=$(status_kb "$F_PID" VmRSS)
    "$LOADGEN" --url "http://127.0.0.1:$F_PORT/mcp" --header "$AUTH" --open-sessions 10 --concurrency 1 > /dev/null
    sleep 0.5
    base=$(status_kb "$F_PID" VmRSS)
    opened=$("$LOADGEN" --url "http://127.0.0.1:$F_PORT/mcp" --header "$AUTH" --open-sessions "$SESSIONS" --concurrency 8)
    sleep 0.5
    after=$(status_kb "$F_PID" VmRSS)
    printf 'idle_rss_kb\t%s\nrss_after_10_sessions_kb\t%s\nrss_after_more_sessions_kb\t%s\nsessions\t%s\nopen_result\t%s\n' \
        "$idle" "$base" "$after" "$SESSIONS" "$opened" >> "$MEM"
    log "memory: idle $idle kB; after 10 sessions $base kB; after $SESSIONS more $after kB"
    stop "$F_PID"
fi

# --- report ----------------------------------------------------------------------------------
python3 - "$CELLS" "$MEM" "$(getconf CLK_TCK)" "$DURATION" "$WARMUP" "$PIN" "$PROFILE" "$ROUNDS" <<'PY'
import json, statistics, sys
cells_f, mem_f, tck, duration, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
rounds = int(sys.argv[8])
cells = {}   # (path, c) -> {round: cell}
order = []   # (path, c) in the order first measured, concurrency-major
for line in open(cells_f):
    rnd, label, c, ticks, hwm, js = line.rstrip("\n").split("\t", 5)
    d = json.loads(js)
    key = (label, int(c))
    if key not in cells:
        cells[key] = {}
        order.append(key)
    if not d.get("calls"):
        # No call succeeded (the server failed, or the load generator did): no measurement.
        for k in ("calls_per_s", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms"):
            d.pop(k, None)
        d["failed"] = True
    total = d.get("calls_total", 0)
    # CPU of the process over the whole cell (warm-up included) per call made in it.
    d["cpu_us"] = int(ticks) / tck * 1e6 / total if total and not d.get("failed") else None
    d["hwm"] = int(hwm or 0)
    cells[key][int(rnd)] = d
# Path-major, as measured: each path's concurrencies together.
paths = list(dict.fromkeys(p for p, _ in order))
concs = list(dict.fromkeys(c for _, c in order))
order.sort(key=lambda k: (paths.index(k[0]), concs.index(k[1])))
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def agg(p, c, k):
    return med(d.get(k) for d in cells.get((p, c), {}).values())
def paired(a, b, k, f):
    """f(a's k, b's k) for each round in which both cells measured k."""
    ra, rb = cells.get(a, {}), cells.get(b, {})
    return [f(ra[r][k], rb[r][k]) for r in ra if r in rb and ra[r].get(k) and rb[r].get(k)]
def ratios(a, b):
    """a ÷ b (throughput) per round, both measured in that round."""
    return paired(a, b, "calls_per_s", lambda x, y: x / y)
def fmt_ratio(rs):
    if not rs:
        return "–"
    m = f"{statistics.median(rs):.2f}"
    lo, hi = f"{min(rs):.2f}", f"{max(rs):.2f}"
    return m if lo == hi else f"{m} ({lo}–{hi})"
pin = sys.argv[6] == "1"
release = sys.argv[7] == "release"
if not release:
    print(f"\n**Built with the `{sys.argv[7]}` profile, not release: these numbers are not results.**")
each = f"medians of {rounds} rounds (each round: every concurrency, each path in turn); a ratio is the median of the per-round ratios, their range in brackets; errors summed; peak RSS of round 1; " if rounds > 1 else ""
print(f"\n### Results ({duration} s per cell after {warmup} s warm-up; {each}tool `echo`; peak RSS and CPU are of the server process measured: the upstream for direct, else the proxy alone; "
      f"{'pinned: load generator and HTTP upstream on CPU 0, the proxy on CPU 1' if pin else 'unpinned: all processes share all CPUs'})\n")
print("| path | c | calls/s | p50 ms | p99 ms | errors | ÷ direct | ÷ supergateway | peak RSS MB | CPU µs/call |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def num(v, f):
    return "–" if v is None else format(v, f)
for (p, c) in order:
    rs = cells[(p, c)]
    # -1: the load generator itself failed (see its messages); counted as a failed round.
    errors = str(sum(max(d.get("errors", 0), 0) for d in rs.values()))
    failed = sum(1 for d in rs.values() if d.get("failed"))
    if failed:
        errors += f" ({failed} round{'s' if failed > 1 else ''} failed)"
    # Round 1's: later rounds start from what the process kept of earlier cells.
    hwm = rs[min(rs)]["hwm"]
    print(f"| {p} | {c} | {num(agg(p, c, 'calls_per_s'), ',.0f')} | {num(agg(p, c, 'p50_ms'), '.3f')} | "
          f"{num(agg(p, c, 'p99_ms'), '.3f')} | {errors} | {fmt_ratio(ratios((p, c), ('direct', c)))} | "
          f"{fmt_ratio(ratios((p, c), ('supergateway', c)))} | {hwm / 1024:.1f} | {num(agg(p, c, 'cpu_us'), '.1f')} |")
for (p, c) in order:
    for r, d in sorted(cells[(p, c)].items()):
        if d.get("error_messages"):
            print(f"\n{p} c={c} round {r} errors: {d['error_messages'][:3]}")
mem = dict(l.rstrip("\n").split("\t", 1) for l in open(mem_f) if "\t" in l)
if mem:
    idle, base, after, n = (int(mem["idle_rss_kb"]), int(mem["rss_after_10_sessions_kb"]),
                            int(mem["rss_after_more_sessions_kb"]), int(mem["sessions"]))
    print(f"\nFentaris memory: idle RSS with 3 stdio upstreams {idle / 1024:.1f} MB; "
          f"after {n} more idle sessions {after / 1024:.1f} MB "
          f"(+{(after - base) / n:.1f} KB per session; sessions opened: {mem['open_result']})")
print("\nTargets (informational, issue 8" + ("" if release else "; not results: a " + sys.argv[7] + " build") + "):")
def line(name, rs, ok_of, unit="×", f=".2f"):
    """A target over the per-round values rs: the median, the range, and whether the median meets it."""
    if not rs:
        return
    m = statistics.median(rs)
    spread = "" if len(rs) == 1 else f" (rounds {min(rs):{f}}–{max(rs):{f}})"
    ok = ok_of(m) if ok_of else None
    print(f"- {name}: {m:{f}}{unit}{spread} {'(met)' if ok else '(missed)' if ok is not None else ''}")
def per_round(p, c, k):
    return [d[k] for d in cells.get((p, c), {}).values() if d.get(k) is not None]
def diffs(a, b, k):
    """a's k minus b's k per round (c=1 latency)."""
    return paired(a, b, k, lambda x, y: x - y)
def p50_ratio(a, b):
    return paired(a, b, "p50_ms", lambda x, y: x / y)
line("c=16 throughput ÷ supergateway ≥ 8", ratios(("fentaris-stdio", 16), ("supergateway", 16)), lambda m: m >= 8)
line("c=16 throughput ÷ mcp-proxy ≥ 12", ratios(("fentaris-stdio", 16), ("mcp-proxy", 16)), lambda m: m >= 12)
line("c=1 p50 ÷ supergateway's ≤ 0.4", p50_ratio(("fentaris-stdio", 1), ("supergateway", 1)), lambda m: m <= 0.4, "")
line("added p50 vs direct (HTTP upstream, c=1) < 0.25 ms", diffs(("fentaris-http", 1), ("direct", 1), "p50_ms"), lambda m: m < 0.25, " ms", ".3f")
if mem:
    print(f"- idle RSS with 3 upstreams < 20 MB: {idle / 1024:.1f} MB {'(met)' if idle < 20 * 1024 else '(missed)'}")
    print(f"- RSS per idle session < 64 KB: {(after - base) / n:.1f} KB {'(met)' if (after - base) / n < 64 else '(missed)'}")
print("\nTargets (informational, issue 17; audit on, the `+log` rows" + ("" if release else "; not results: a " + sys.argv[7] + " build") + "):")
line("HTTP upstream c=16 throughput ÷ direct ≥ 0.6", ratios(("fentaris-http+log", 16), ("direct", 16)), lambda m: m >= 0.6)
# The references: what a proxy with none of Fentaris' work reaches on this machine.
REFERENCES = (("nginx", "a plain reverse proxy (nginx)"), ("hyper-floor", "hyper's server and client alone (hyper-floor)"))
for ref, what in REFERENCES:
    line(f"  for scale: {what} c=16 ÷ direct", ratios((ref, 16), ("direct", 16)), None)
    line(f"  Fentaris (HTTP upstream, audit on) ÷ {ref} at c=16", ratios(("fentaris-http+log", 16), (ref, 16)), None)
line("HTTP upstream c=64 ÷ c=16 throughput (no drop: ≥ 0.95)", ratios(("fentaris-http+log", 64), ("fentaris-http+log", 16)), lambda m: m >= 0.95)
line("added p50 vs direct (HTTP upstream, c=1) ≤ 0.1 ms", diffs(("fentaris-http+log", 1), ("direct", 1), "p50_ms"), lambda m: m <= 0.1, " ms", ".3f")
line("stdio upstream c=16 throughput ÷ supergateway ≥ 15", ratios(("fentaris-stdio+log", 16), ("supergateway", 16)), lambda m: m >= 15)
for p in ("fentaris-stdio+log", "fentaris-http+log"):
    line(f"proxy CPU per call at c=16 ≤ 25 µs ({p})", per_round(p, 16, "cpu_us"), lambda m: m <= 25, " µs", ".1f")
for ref, _ in REFERENCES:
    line(f"  for scale: CPU per call at c=16 ({ref})", per_round(ref, 16, "cpu_us"), None, " µs", ".1f")
for ref, _ in reversed(REFERENCES):
    line(f"  for scale: added p50 vs direct at c=1 ({ref})", diffs((ref, 1), ("direct", 1), "p50_ms"), None, " ms", ".3f")
print("(Memory targets of issue 17: bench/memory.sh.)")
PY
log "raw data: $CELLS, $MEM; logs in $OUT"
