#!/usr/bin/env bash
# Benchmark: `berth workspace start` of a stopped workspace (process start, database, lock,
# inspect, docker start) vs `docker start` of an equivalent prepared container, same run.
# Uses the busybox test image; everything is labeled and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-target/release/berth}
ROUNDS=${ROUNDS:-7}
work=$(mktemp -d)
label="io.berth.test=bench-$$"
cleanup() {
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter "label=$label" | xargs -r docker network rm >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export BERTH_DATABASE_URL=sqlite://$work/berth.db BERTH_DATA_DIR=$work/data BERTH_CONFIG=$work/none.toml \
       BERTH_LOG=warn BERTH_WORKSPACE_IMAGE=berth-test/busybox:latest BERTH_STORAGE_ROOT=$work/storage \
       BERTH_PORTS__BASE=32200 BERTH_PORTS__HOST_IP=127.0.0.1 BERTH_WORKSPACE__GPUS=none \
       BERTH_WORKSPACE__ISOLATION=plain BERTH_WORKSPACE__STOP_TIMEOUT_SECONDS=2 BERTH_WORKSPACE__EXTRA_LABEL=$label
"$BIN" user add benchuser >/dev/null
"$BIN" workspace start benchuser >/dev/null && "$BIN" workspace stop benchuser >/dev/null
docker create --name "bench-docker-$$" --label "$label" -p 127.0.0.1:32322:22 berth-test/busybox:latest >/dev/null

ms() { python3 -c 'import time; print(time.monotonic_ns()//1000000)'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
berth_times=(); docker_times=()
for _ in $(seq "$ROUNDS"); do
  t0=$(ms); "$BIN" workspace start benchuser >/dev/null; t1=$(ms)
  [ "$(docker inspect -f '{{.State.Running}}' workspace-benchuser)" = true ] || { echo "not running"; exit 1; }
  berth_times+=($((t1 - t0)))
  "$BIN" workspace stop benchuser >/dev/null
  t0=$(ms); docker start "bench-docker-$$" >/dev/null; t1=$(ms)
  docker_times+=($((t1 - t0)))
  docker stop -t 2 "bench-docker-$$" >/dev/null
done
b=$(printf '%s\n' "${berth_times[@]}" | median)
d=$(printf '%s\n' "${docker_times[@]}" | median)
echo
echo "| start of a stopped workspace ($ROUNDS rounds, median) | ms |"
echo "|---|---|"
echo "| berth workspace start (CLI) | $b |"
echo "| docker start (CLI), equivalent container | $d |"
echo
echo "Berth / docker start ratio: $(python3 -c "print(f'{$b/$d:.2f}')")"
