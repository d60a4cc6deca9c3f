#!/usr/bin/env bash
# redis-py's own test suite, run against one redis-server directly and through shardcast
# over three redis-servers, side by side; prints each side's pass count, the ratio, and the
# tests that pass directly but not through shardcast.
#
# Only the tests redis-py considers valid for a Redis Cluster are run (`-m "not
# onlynoncluster"`), and only its synchronous core files (commands, pipelines, pub/sub,
# scripting, functions, locks, encoding). Needs python3 (with venv), redis-server, cargo,
# and PyPI (pip downloads redis-py 5.0.8's source and pytest into target/compat/).
#
#   tests/compat/redis-py.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/target/compat
VERSION=5.0.8
mkdir -p "$WORK"

echo "== shardcast"
cargo build -q -p shardcast-tests --bin shardcast_node
NODE=$ROOT/target/debug/shardcast_node

echo "== redis-py $VERSION and pytest"
if [ ! -x "$WORK/venv/bin/python" ]; then
  python3 -m venv "$WORK/venv"
fi
PY=$WORK/venv/bin/python
if [ ! -d "$WORK/redis-$VERSION" ]; then
  (cd "$WORK" && "$PY" -m pip download -q --no-binary :all: --no-deps "redis==$VERSION" \
    && tar xzf "redis-$VERSION.tar.gz")
fi
"$PY" -m pip install -q pytest pytest-timeout "$WORK/redis-$VERSION"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_redis() {
  local port=$1
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$WORK" --dbfilename "dump-$port.rdb" \
    >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server on $port did not start" >&2; exit 1
}

DIRECT=$(free_port); start_redis "$DIRECT"
FLEET=()
for _ in 1 2 3; do p=$(free_port); start_redis "$p"; FLEET+=("$p"); done
PROXY=$(free_port)
CONFIG=$WORK/shardcast.toml
{
  echo "listen = \"127.0.0.1:$PROXY\""
  echo "[migration]"
  echo "state_dir = \"$WORK/state\""
  i=0
  for p in "${FLEET[@]}"; do
    printf '[[instances]]\nname = "redis-%s"\naddress = "127.0.0.1:%s"\n' "$i" "$p"
    i=$((i + 1))
  done
} >"$CONFIG"
rm -rf "$WORK/state"
"$NODE" run --config "$CONFIG" 2>"$WORK/shardcast.log" &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$PROXY" ping >/dev/null 2>&1 && break; sleep 0.1; done

FILES="tests/test_commands.py tests/test_pipeline.py tests/test_pubsub.py tests/test_scripting.py
tests/test_function.py tests/test_lock.py tests/test_encoding.py"
run() {
  local port=$1 out=$2
  (cd "$WORK/redis-$VERSION" && "$PY" -m pytest $FILES --redis-url="redis://127.0.0.1:$port/0" \
    -m "not onlynoncluster and not redismod and not ssl" -p no:cacheprovider --timeout 30 \
    -q -rA 2>&1) >"$out" || true
}
echo "== direct redis-server"
run "$DIRECT" "$WORK/direct.txt"
echo "== through shardcast"
run "$PROXY" "$WORK/proxy.txt"

passed() { grep -E '^PASSED ' "$1" | awk '{print $2}' | sort; }
count() { passed "$1" | wc -l; }
D=$(count "$WORK/direct.txt")
P=$(count "$WORK/proxy.txt")
echo
echo "redis-py $VERSION, cluster-valid tests: direct $D passed, through shardcast $P passed ($(awk -v p="$P" -v d="$D" 'BEGIN { printf "%.1f", 100 * p / d }') % of direct)"
echo "summary, direct:            $(tail -1 "$WORK/direct.txt")"
echo "summary, through shardcast: $(tail -1 "$WORK/proxy.txt")"
echo
echo "passed directly, not through shardcast:"
comm -23 <(passed "$WORK/direct.txt") <(passed "$WORK/proxy.txt") | sed 's/^/  /'
