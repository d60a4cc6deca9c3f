#!/usr/bin/env bash
# redis-rs's own test suite (the `redis` crate 1.8.1 as published on crates.io, with
# `redis-test` 1.0.4 for its server harness), run twice side by side: against the
# redis-servers the suite starts itself, and through shardcast, by pointing the suite's
# REDISRS_SERVER_BIN at `server-shim.sh`, which starts three real redis-servers and
# shardcast in front of them on the port the test asked for. Prints each side's pass
# count, the ratio, and the tests that pass directly but not through shardcast.
#
# The test files run are the ones about one server's commands: basics, scripts, streams,
# geo, types and big numbers. Cluster, sentinel, TLS, Unix-socket and module tests start
# servers the shim does not stand in for; the async and ACL files need the repository's
# unpublished `test_macros` crate. Needs curl, redis-server, cargo,
# and crates.io (for the crates and the suite's dev-dependencies).
#
#   tests/compat/redis-rs.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/target/compat/redis-rs
VERSION=1.8.1
HARNESS=1.0.4
mkdir -p "$WORK"

echo "== shardcast"
cargo build -q -p shardcast-tests --bin shardcast_node
export SHARDCAST_NODE=$ROOT/target/debug/shardcast_node
export REAL_REDIS_SERVER
REAL_REDIS_SERVER=$(command -v redis-server)

echo "== redis-rs $VERSION and redis-test $HARNESS"
fetch() {
  [ -d "$WORK/$1-$2" ] || curl -sSfL "https://static.crates.io/crates/$1/$1-$2.crate" | tar xz -C "$WORK"
}
fetch redis "$VERSION"
fetch redis-test "$HARNESS"
CRATE=$WORK/redis-$VERSION
if ! grep -q "shardcast compat" "$CRATE/Cargo.toml"; then
  # The published manifest drops the suite's path dependency on redis-test; wire it back,
  # and make redis-test use this very copy of redis.
  cat >>"$CRATE/Cargo.toml" <<TOML

# shardcast compat: the suite's harness, in a workspace of its own
[workspace]

[dev-dependencies.redis-test]
path = "../redis-test-$HARNESS"
features = ["aio"]

[patch.crates-io]
redis = { path = "." }
TOML
fi
TESTS=(test_basic test_script test_streams test_geospatial test_types test_bignum)
FEATURES="tokio-comp,aio,script,streams,geospatial,acl,json,num-bigint,rust_decimal,bigdecimal,uuid"
ARGS=()
for t in "${TESTS[@]}"; do ARGS+=(--test "$t"); done
echo "== building the suite"
(cd "$CRATE" && CARGO_TARGET_DIR=$WORK/target cargo test -q --no-run --features "$FEATURES" "${ARGS[@]}" 2>&1 | tail -3)

run() {
  local out=$1
  shift
  (cd "$CRATE" && env "$@" CARGO_TARGET_DIR="$WORK/target" RUST_TEST_THREADS=2 \
    cargo test --features "$FEATURES" "${ARGS[@]}" --no-fail-fast 2>&1) >"$out" || true
}
echo "== direct redis-server"
run "$WORK/direct.txt" REDISRS_SERVER_TYPE=tcp
echo "== through shardcast"
run "$WORK/proxy.txt" REDISRS_SERVER_TYPE=tcp REDISRS_SERVER_BIN="$ROOT/tests/compat/server-shim.sh"

passed() { grep -E '^test .* \.\.\. ok$' "$1" | sed 's/ \.\.\. ok$//' | sort -u; }
passed "$WORK/direct.txt" >"$WORK/direct.passed"
passed "$WORK/proxy.txt" >"$WORK/proxy.passed"
D=$(wc -l <"$WORK/direct.passed")
P=$(wc -l <"$WORK/proxy.passed")
echo
echo "redis-rs $VERSION (${TESTS[*]}): direct $D passed, through shardcast $P passed ($(awk "BEGIN{printf \"%.1f\", 100*$P/($D>0?$D:1)}") % of direct)"
echo
echo "passed directly, not through shardcast:"
comm -23 "$WORK/direct.passed" "$WORK/proxy.passed" | sed 's/^/  /'
