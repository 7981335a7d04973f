#!/usr/bin/env bash
# Runs the overhead benchmark and rewrites docs/benchmarks.md.
#
#   bench/run.sh                      every scenario, about 20 minutes on 2 cores
#   bench/run.sh -profile /tmp/prof   also CPU and allocation profiles of the
#                                     gateway's 256-client runs
#   bench/run.sh -only chat-32        one scenario (see bench/README.md)
#
# Flags after the script name go to bench/run (go run ./bench/run -h lists
# them). Environment:
#   BENCH_DATABASE_URL  PostgreSQL the gateways use, each in a fresh schema
#                       (default: the local server on 127.0.0.1:5432, database
#                       test; when it does not respond, the script starts its own
#                       server from /usr/lib/postgresql/*/bin on a free port
#                       from 55432 on)
#   BENCH_REDIS_URL     Redis of the gateway-redis runs (default: the local
#                       server on 127.0.0.1:6379, database 15; when it does not
#                       respond, the script starts redis-server on a free port
#                       from 56379 on)
#   BENCH_NOTE          a sentence about what else ran on the machine
#   BENCH_GO_BENCHTIME  -benchtime of the Go benchmarks (default 1s)
set -euo pipefail
cd "$(dirname "$0")/.."

out=bench/out
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bin="$out/bin"
mkdir -p "$bin"
started=()
cleanup() {
	for cmd in "${started[@]}"; do eval "$cmd" || true; done
}
trap cleanup EXIT

# free_port prints the first port from $1 on that accepts no connection.
free_port() {
	local port=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
	echo "$port"
}

# 10,000 streams need a descriptor each in the load generator and in the
# gateway, whose xai streams share HTTP/2 connections upstream in that
# scenario, plus some for the store. Grok web streams take a second
# descriptor each for their HTTP/1.1 upstream connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
echo "bench: open-files limit $nofile"
extra=()
if [ "$nofile" != unlimited ]; then
	slow=$(( nofile - 600 < 10000 ? nofile - 600 : 10000 ))
	grok=$(( (nofile - 600) / 2 < 10000 ? (nofile - 600) / 2 : 10000 ))
	[ "$slow" -lt 10000 ] && echo "bench: the open-files limit allows $slow slow streams, not 10000"
	[ "$grok" -lt 10000 ] && echo "bench: the open-files limit allows $grok slow Grok web streams, not 10000"
	extra+=(-slow-clients "$slow" -slow-grok-clients "$grok")
fi

echo "bench: building"
for pkg in bench/gateway bench/baseline bench/load bench/run cmd/xai-emulator cmd/grokweb-emulator; do
	go build -o "$bin/$(basename "$pkg")" "./$pkg"
done

# PostgreSQL: the one named by BENCH_DATABASE_URL, else the shared local
# server, else one of our own.
db="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
pg_answers() { "$bin/run" -check-database "$1" >/dev/null 2>&1; }
if [ -z "${BENCH_DATABASE_URL:-}" ] && ! pg_answers "$db"; then
	pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
	[ -n "$pgbin" ] || { echo "bench: no PostgreSQL on 127.0.0.1:5432 and none installed; set BENCH_DATABASE_URL" >&2; exit 1; }
	pgdir=$(mktemp -d /tmp/grokproxy-bench-pg.XXXXXX)
	started+=("rm -rf $pgdir")
	as=()
	if [ "$(id -u)" = 0 ]; then chown postgres "$pgdir"; as=(runuser -u postgres --); fi
	pgport=$(free_port 55432)
	echo "bench: starting PostgreSQL in $pgdir on port $pgport"
	"${as[@]}" "$pgbin/initdb" -D "$pgdir/data" -A trust -U postgres >/dev/null
	"${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
		-o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
	started=("${as[*]} $pgbin/pg_ctl -D $pgdir/data -m fast stop >/dev/null" "${started[@]}")
	"${as[@]}" "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres test
	db="postgres://postgres@127.0.0.1:$pgport/test?sslmode=disable"
fi
pg_answers "$db" || { echo "bench: PostgreSQL does not respond at $db; set BENCH_DATABASE_URL" >&2; exit 1; }

# Redis: the shared local server, or one of our own.
redis="${BENCH_REDIS_URL:-redis://127.0.0.1:6379/15}"
if [ -z "${BENCH_REDIS_URL:-}" ] && ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
	if command -v redis-server >/dev/null; then
		redisport=$(free_port 56379)
		echo "bench: starting redis-server on port $redisport"
		redis-server --daemonize yes --bind 127.0.0.1 --port "$redisport" --save "" --appendonly no \
			--pidfile "$out/redis.pid" --logfile "$out/redis.log"
		started+=("kill \$(cat $out/redis.pid)")
		redis="redis://127.0.0.1:$redisport/15"
	else
		echo "bench: no Redis; skipping the gateway-redis runs"
		redis=""
	fi
fi

echo "bench: Go benchmarks"
TEST_DATABASE_URL="$db" go test -run '^$' -benchmem -benchtime "${BENCH_GO_BENCHTIME:-1s}" \
	-bench 'BenchmarkAuthenticateCached|BenchmarkDecodeChatRequest|BenchmarkSSEChunk|BenchmarkAcquireRelease|BenchmarkBatchInsert' \
	./internal/auth ./internal/api/openai ./internal/pool ./internal/audit \
	| grep -E '^(Benchmark|goos|goarch|cpu|pkg)' | tee "$out/go-bench.txt"

echo "bench: scenarios"
"$bin/run" -bin "$bin" -out docs/benchmarks.md -database "$db" -redis "$redis" \
	-go-bench "$out/go-bench.txt" -findings bench/findings.md -load-before "$load_before" -note "${BENCH_NOTE:-}" "${extra[@]}" "$@"
echo "bench: wrote docs/benchmarks.md"
