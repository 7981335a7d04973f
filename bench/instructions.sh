#!/usr/bin/env bash
# Counts the user-space instructions per non-streamed chat request of the
# JSON relay and of the gateway (xai provider, the settings of bench/run.sh)
# with valgrind's callgrind. Unlike CPU time, the count does not depend on
# what else the machine runs, so it shows the effect of a code change that
# the noise of CPU readings would hide. It leaves out the kernel's share
# (system calls), and valgrind runs the program many times slower, so the
# load is 4 clients.
#
#   bench/instructions.sh [requests]     default 1000 per system
#
# Needs valgrind, psql and curl, and PostgreSQL at BENCH_DATABASE_URL
# (default: the local server on 127.0.0.1:5432, database test). Everything
# listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-1000}
db="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
for tool in valgrind callgrind_annotate callgrind_control psql curl; do
	command -v "$tool" >/dev/null || { echo "instructions: $tool is not installed" >&2; exit 1; }
done

out=bench/out
bin="$out/bin"
mkdir -p "$bin"
for pkg in bench/gateway bench/baseline bench/load cmd/xai-emulator; do
	go build -o "$bin/$(basename "$pkg")" "./$pkg"
done
dir=$(mktemp -d /tmp/grokproxy-instructions.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
	local port=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
	echo "$port"
}
wait_http() {
	for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done
	echo "instructions: $1 did not respond" >&2
	return 1
}

# valgrind takes its host name from HOST, which the gateway reads too.
# callgrind_control needs the same value to find the process.
export HOST=127.0.0.1
# Asynchronous preemption signals trip callgrind's signal handling.
export GODEBUG=asyncpreemptoff=1

emu_port=$(free_port 9400)
"$bin/xai-emulator" -listen "127.0.0.1:$emu_port" -keys bench-key -chunks 20 -token-delay 0s -quiet >"$dir/emulator.log" 2>&1 &
pids+=($!)

# stop ends a process that this shell started, without a job report.
stop() {
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# count runs the load against the system at url under callgrind (started
# by the caller) and prints its instructions per request.
count() {
	local name=$1 pid=$2 url=$3 key=$4
	"$bin/load" -url "$url" -key "$key" -clients 4 -requests 25 -warmup 0s -duration 300s >/dev/null 2>&1
	callgrind_control -z "$pid" >/dev/null 2>&1
	"$bin/load" -url "$url" -key "$key" -clients 4 -requests $((n / 4)) -warmup 0s -duration 600s >"$dir/$name-load.json" 2>&1
	callgrind_control -d "$pid" >/dev/null 2>&1
	sleep 1
	local file total
	file=$(ls -t "$dir/$name.cg."* | head -n1)
	total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
	echo $((total / (n / 4 * 4)))
}

port=$(free_port 9410)
valgrind --tool=callgrind --callgrind-out-file="$dir/relay.cg" \
	"$bin/baseline" -mode relay -listen "127.0.0.1:$port" -upstream "http://127.0.0.1:$emu_port" >"$dir/relay.log" 2>&1 &
relay_pid=$!
pids+=("$relay_pid")
for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
relay=$(count relay "$relay_pid" "http://127.0.0.1:$port" bench-key)
stop "$relay_pid"

schema=bench_instructions
psql -q "$db" -c "SET client_min_messages=warning" -c "DROP SCHEMA IF EXISTS $schema CASCADE" -c "CREATE SCHEMA $schema" >/dev/null
sep='?'
[[ "$db" == *\?* ]] && sep='&'
cat >"$dir/models.yaml" <<'EOF'
models:
  - id: grok-4-fast-non-reasoning
    kind: chat
    routes: [{provider: xai, upstream: grok-4-fast-non-reasoning}]
EOF
port=$(free_port 9420)
admin=bench-admin-key-not-secret
env PORT="$port" DATABASE_URL="$db${sep}search_path=$schema" \
	GROKPROXY_ENCRYPTION_KEY="$(head -c32 /dev/urandom | base64)" ADMIN_API_KEYS="$admin" \
	XAI_BASE_URL="http://127.0.0.1:$emu_port/v1" MODELS_FILE="$dir/models.yaml" \
	LOG_LEVEL=info LOG_FORMAT=json METRICS_ENABLED=true USER_RATE_LIMIT_PER_MINUTE=1000000 \
	SESSION_RATE_LIMIT_PER_SECOND=1000000 SESSION_ROTATION_THRESHOLD=0 AUDIT_SPOOL_PATH="$dir/spool" REDIS_URL= \
	valgrind --tool=callgrind --callgrind-out-file="$dir/gateway.cg" "$bin/gateway" -debug "" >"$dir/gateway.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
base="http://127.0.0.1:$port"
wait_http "$base/livez"
call() { curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' "$base$1" -d "$2"; }
call /admin/sessions '{"sessions":[{"provider":"xai","api_key":"bench-key"}]}' >/dev/null
user=$(call /admin/users '{"name":"bench","rate_limit_per_minute":1000000}' | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
key=$(call "/admin/users/$user/keys" '{"name":"bench"}' | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
[ -n "$key" ] || { echo "instructions: could not create the benchmark key" >&2; exit 1; }
gateway=$(count gateway "$gateway_pid" "$base" "$key")
stop "$gateway_pid"
psql -q "$db" -c "SET client_min_messages=warning" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null

echo "instructions per request: relay $relay, gateway $gateway ($(awk -v g="$gateway" -v r="$relay" 'BEGIN {printf "%.2f", g / r}')x)"
