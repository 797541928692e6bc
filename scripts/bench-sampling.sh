#!/usr/bin/env bash
# Benchmark: what Berth's usage sampler costs. Berth's own CPU time (utime + stime from
# /proc/<pid>/stat) over DURATION seconds, first idle (no workspace), then with N running
# workspaces that it samples (one stats stream each, a stored sample every 10 s, sizes every
# 5 minutes). The engine's CPU over the same windows is printed beside it: the streams cost
# dockerd too. The N containers are busybox ones labelled as Berth's workspaces and started
# directly (one user network each would exhaust the engine's default address pools at 31);
# everything is labelled io.berth.test and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-target/release/berth}
DURATION=${DURATION:-60}
N=${N:-100}
SETTLE=${SETTLE:-20}
work=$(mktemp -d)
run="bench-$$"
label="io.berth.test=$run"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sql() { python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$work/berth.db" "$1"; }
hz=$(getconf CLK_TCK)
dockerd=$(pgrep -xo dockerd || true)

port=$(free_port)
BERTH_LISTEN=127.0.0.1:$port BERTH_DATABASE_URL="sqlite://$work/berth.db" BERTH_DATA_DIR="$work/data" \
BERTH_CONFIG="$work/none.toml" BERTH_LOG=warn BERTH_STORAGE_ROOT="$work/storage" \
BERTH_WORKSPACE_IMAGE=berth-test/busybox:latest BERTH_WORKSPACE__ISOLATION=plain BERTH_WORKSPACE__GPUS=none \
BERTH_WORKSPACE__EXTRA_LABEL="$label" \
  "$BIN" serve > "$work/serve.log" 2>&1 &
berth=$!
pids+=("$berth")
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

# Prints "berth_percent dockerd_percent" of one core over DURATION seconds.
measure() {
  local b0 b1 d0 d1
  b0=$(ticks "$berth"); d0=$([ -n "$dockerd" ] && ticks "$dockerd" || echo 0)
  sleep "$DURATION"
  b1=$(ticks "$berth"); d1=$([ -n "$dockerd" ] && ticks "$dockerd" || echo 0)
  python3 -c "import sys; hz,dur=$hz,$DURATION; print(f'{($b1-$b0)/hz/dur*100:.2f} {($d1-$d0)/hz/dur*100:.2f}')"
}

sleep "$SETTLE"
read -r idle_berth idle_dockerd < <(measure)

for i in $(seq -w 1 "$N"); do
  user="bench$i"
  docker run -d --name "workspace-$user" --label io.berth.managed=true --label "io.berth.user=$user" \
    --label "$label" --memory 64m berth-test/busybox:latest sleep 100000 >/dev/null
done
# Until the sampler follows all of them (each has a stored sample), then SETTLE more seconds.
deadline=$((SECONDS + 120))
until [ "$(sql 'SELECT COUNT(DISTINCT username) FROM usage_samples' 2>/dev/null || echo 0)" -ge "$N" ]; do
  [ $SECONDS -lt $deadline ] || { echo "the sampler did not follow all $N workspaces in 120 s" >&2; exit 1; }
  sleep 1
done
sleep "$SETTLE"
read -r busy_berth busy_dockerd < <(measure)
if [ -n "${PROFILE:-}" ]; then
  # Where the sampler's time goes: perf's call graph of Berth over 20 s, its top entries.
  perf record -q -F 499 -g -p "$berth" -o "$work/perf.data" -- sleep 20 >/dev/null 2>&1
  perf report -q --stdio --children -i "$work/perf.data" --percent-limit 3 -g none --sort sym 2>/dev/null | grep -v '^$' | head -80 > "$PROFILE"
fi
samples=$(sql 'SELECT COUNT(*) FROM usage_samples')
db_bytes=$(cat "$work"/berth.db "$work"/berth.db-wal 2>/dev/null | wc -c)
echo "sampling: idle Berth ${idle_berth} % of one core; with $N sampled workspaces ${busy_berth} % (dockerd: ${idle_dockerd} % idle, ${busy_dockerd} % with them); ${samples} samples stored, database and its log ${db_bytes} bytes"
python3 -c "print(f'sampling: Berth with $N workspaces / idle Berth = {($busy_berth)/max($idle_berth,0.01):.1f}x; sampler cost {$busy_berth-$idle_berth:.2f} % of one core')"

# The history's disk cost per workspace-week on SQLite: the rows one workspace running all week
# keeps (360 raw samples of the last hour, then one a minute for 167 hours), in a file of their
# own with the table's indexes, without and with one GPU in each sample.
python3 - "$work" <<'PY'
import os, random, sqlite3, sys
work = sys.argv[1]
for gpus in (None, "[[0,87,21474836480,64]]"):
    path = f"{work}/cost.db"
    if os.path.exists(path):
        os.remove(path)
    c = sqlite3.connect(path)
    c.executescript(open("migrations/sqlite/0006_usage_samples.sql").read())
    empty = os.path.getsize(path)
    now = 1_800_000_000
    rows = [("alice-smith", now - i * 10, 10) for i in range(360)] + [("alice-smith", now - 3600 - i * 60, 60) for i in range(60 * 167)]
    c.executemany(
        "INSERT INTO usage_samples VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(u, at, span, random.random() * 4, random.randint(1 << 28, 1 << 34), random.random() * 1e6, random.random() * 1e5,
          random.random() * 1e7, random.random() * 1e7, gpus) for (u, at, span) in rows],
    )
    c.commit()
    c.execute("VACUUM")
    c.close()
    size = os.path.getsize(path) - empty
    print(f"history: {len(rows)} rows per workspace-week {'with one GPU' if gpus else 'without GPUs'}: {size / 1e6:.2f} MB on SQLite ({size / len(rows):.0f} B a row)")
PY
