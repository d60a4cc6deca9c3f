#!/usr/bin/env bash
# Stands in for redis-server in a client's test harness: given `--port P` (and whatever
# else the harness passes), it starts three real redis-servers on free ports with the same
# options and runs shardcast in front of them on P. The redis-servers are killed when
# shardcast ends (however it ends). Anything without `--port` (a version query) goes to
# the real redis-server. Needs REAL_REDIS_SERVER and SHARDCAST_NODE in the environment.
set -euo pipefail
REAL=${REAL_REDIS_SERVER:?}
NODE=${SHARDCAST_NODE:?}
port=""
logfile=""
rest=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --port) port=${args[i + 1]}; i=$((i + 1)) ;;
    --bind) i=$((i + 1)) ;;
    --logfile) logfile=${args[i + 1]}; i=$((i + 1)) ;;
    --tls-port | --unixsocket) exec "$REAL" "$@" ;;
    *) rest+=("${args[i]}") ;;
  esac
done
if [ -z "$port" ] || [ "$port" = "0" ]; then exec "$REAL" "$@"; fi
dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
{
  echo "listen = \"127.0.0.1:$port\""
  echo "[migration]"
  echo "state_dir = \"$dir/state\""
} >"$dir/shardcast.toml"
for n in 0 1 2; do
  p=$(free_port)
  setpriv --pdeathsig KILL -- "$REAL" --port "$p" --bind 127.0.0.1 --dir "$dir" \
    --dbfilename "dump-$p.rdb" --logfile "$dir/redis-$n.log" "${rest[@]}" &
  printf '[[instances]]\nname = "redis-%s"\naddress = "127.0.0.1:%s"\n' "$n" "$p" >>"$dir/shardcast.toml"
  for _ in $(seq 200); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.02; done
done
exec "$NODE" run --config "$dir/shardcast.toml" 2>>"${logfile:-$dir/shardcast.log}"
