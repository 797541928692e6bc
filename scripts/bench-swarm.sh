#!/usr/bin/env bash
# Benchmark: `berth workspace start` of a stopped workspace through the Swarm runtime (scale the
# service to 1, wait for its task) vs through the plain Docker runtime (docker start), same run,
# same busybox image. The swarm is a single node made here on loopback when the engine is in
# none, and left afterwards; an engine already in a swarm is not touched (the bench says so).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-target/release/berth}
ROUNDS=${ROUNDS:-7}
work=$(mktemp -d)
label="io.berth.test=bench-swarm-$$"
made_swarm=
cleanup() {
  docker service ls -q --filter "label=$label" 2>/dev/null | xargs -r docker service rm >/dev/null
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null
  for net in $(docker network ls -q --filter "label=$label"); do
    for _ in $(seq 20); do docker network rm "$net" >/dev/null 2>&1 && break; sleep 0.5; done
  done
  if [ -n "$made_swarm" ]; then
    docker swarm leave --force >/dev/null
    [ "$made_swarm" = keep-bridge ] || docker network rm docker_gwbridge >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# The tests' swarm lock: a test process that finds this swarm would take it for its own leftover.
exec 9>/tmp/berth-test-swarm.lock
flock 9
if [ "$(docker info -f '{{.Swarm.LocalNodeState}}')" != inactive ]; then
  echo "bench-swarm: this engine is in a swarm already; not touching it"; exit 0
fi
docker network inspect docker_gwbridge >/dev/null 2>&1 && had_bridge=1 || had_bridge=
docker swarm init --listen-addr 127.0.0.1:2377 --advertise-addr 127.0.0.1 \
  --default-addr-pool 10.231.0.0/16 --default-addr-pool-mask-length 24 >/dev/null
made_swarm=1
[ -z "$had_bridge" ] || made_swarm=keep-bridge
docker node update --label-add "io.berth.test.swarm=bench-$$" "$(docker info -f '{{.Swarm.NodeID}}')" >/dev/null

export BERTH_DATA_DIR=$work/data BERTH_CONFIG=$work/none.toml BERTH_LOG=warn \
       BERTH_WORKSPACE_IMAGE=berth-test/busybox:latest BERTH_STORAGE_ROOT=$work/storage \
       BERTH_PORTS__HOST_IP=0.0.0.0 BERTH_WORKSPACE__GPUS=none BERTH_WORKSPACE__ISOLATION=plain \
       BERTH_WORKSPACE__MEMORY_RESERVATION_GIB=1 BERTH_WORKSPACE__STOP_TIMEOUT_SECONDS=2 \
       BERTH_WORKSPACE__EXTRA_LABEL=$label

ms() { python3 -c 'import time; print(time.monotonic_ns()//1000000)'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# `time_starts RUNTIME PORT_BASE`: the median start of a stopped workspace, in ms.
time_starts() {
  local runtime=$1 times=()
  export BERTH_RUNTIME=$runtime BERTH_PORTS__BASE=$2 BERTH_DATABASE_URL=sqlite://$work/$runtime.db
  "$BIN" user add "bench$runtime" >/dev/null
  "$BIN" workspace start "bench$runtime" >/dev/null && "$BIN" workspace stop "bench$runtime" >/dev/null
  for _ in $(seq "$ROUNDS"); do
    t0=$(ms); "$BIN" workspace start "bench$runtime" >/dev/null; t1=$(ms)
    [[ "$("$BIN" workspace status "bench$runtime")" == *": running"* ]] || { echo "bench-swarm: $runtime not running" >&2; exit 1; }
    times+=($((t1 - t0)))
    "$BIN" workspace stop "bench$runtime" >/dev/null
  done
  printf '%s\n' "${times[@]}" | median
}
d=$(time_starts docker 31200)
s=$(time_starts swarm 31400)
echo
echo "| start of a stopped workspace ($ROUNDS rounds, median) | ms |"
echo "|---|---|"
echo "| berth workspace start, runtime = docker | $d |"
echo "| berth workspace start, runtime = swarm | $s |"
echo
echo "Swarm / Docker ratio: $(python3 -c "print(f'{$s/$d:.2f}')")"
