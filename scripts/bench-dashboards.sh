#!/usr/bin/env bash
# Benchmark: Docker engine API calls per minute while 1, then 200, dashboards follow one running
# workspace through the live-state stream (GET /events/workspace, server-sent events) and, as
# the page does, ask for its usage card and its GPU board every 5 s (the `usage-html` and
# `gpu-share-html` server functions).
# Berth's engine is a counting proxy in front of the Docker socket (tcp on loopback), which logs
# every HTTP request line that goes to the engine. Busybox test image, plain isolation;
# everything is labeled io.berth.test and removed afterwards.
# DURATION (seconds, default 60) is the length of each measurement, taken SETTLE (10) seconds after
# the streams opened; the figures are per minute. MANY (200) is the larger number of dashboards.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-target/release/berth}
DURATION=${DURATION:-60}
MANY=${MANY:-200}
SETTLE=${SETTLE:-10}
SOCKET=${DOCKER_SOCKET:-/var/run/docker.sock}
work=$(mktemp -d)
label="io.berth.test=bench-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter "label=$label" | xargs -r docker network rm >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The counting proxy: TCP on loopback -> the engine's Unix socket; one log line per request.
cat > "$work/proxy.py" <<'PY'
import asyncio, re, sys, time
port, socket_path, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = open(log_path, "a", buffering=1)
REQUEST = re.compile(rb"^(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS) (\S+) HTTP/1\.[01]$")

async def pipe(reader, writer, count):
    tail = b""
    try:
        while data := await reader.read(65536):
            if count:
                lines = (tail + data).split(b"\r\n")
                tail = lines.pop()[-8192:]
                for line in lines:
                    if m := REQUEST.match(line):
                        log.write(f"{time.time():.3f} {m[1].decode()} {m[2].decode(errors='replace')}\n")
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()

async def handle(client_r, client_w):
    try:
        engine_r, engine_w = await asyncio.open_unix_connection(socket_path)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, engine_w, True), pipe(engine_r, client_w, False))
    client_w.close()
    engine_w.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY

# N simulated dashboards: each opens the stream with the user's session and reads it. Once every
# stream got its first event and SETTLE more seconds passed (the opening burst is not steady
# state), measures for DURATION seconds; prints the window's start and end, the events read in it
# and the usage cards answered in it.
cat > "$work/dashboards.py" <<'PY'
import asyncio, sys, time
port, cookie, n, duration, settle = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
counts = [0] * n
cards = [0, 0]

async def usage_cards(i, endpoint="usage-html", marker=b"usage-cpu", counter=0):
    """The page's 5-second refresh of a card, one connection per request."""
    await asyncio.sleep(5 * i / max(n, 1))
    request = (f"POST /api/{endpoint} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
               f"Cookie: {cookie}\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               f"Content-Length: 0\r\nConnection: close\r\n\r\n").encode()
    while True:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        if not answer.startswith(b"HTTP/1.1 200"):
            sys.exit(f"{endpoint} {i}: {answer[:200]!r}")
        if marker not in answer:
            sys.exit(f"{endpoint} {i} lacks {marker!r}: {answer[:300]!r}")
        cards[counter] += 1
        await asyncio.sleep(5)

async def dashboard(i, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET /events/workspace HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Accept: text/event-stream\r\nCookie: {cookie}\r\n\r\n").encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        sys.exit(f"dashboard {i}: {status!r}")
    seen = b""
    while b"event: workspace" not in seen:
        chunk = await reader.read(65536)
        if not chunk:
            sys.exit(f"dashboard {i}: stream ended before its first event")
        seen += chunk
    ready.release()
    while chunk := await reader.read(65536):
        counts[i] += chunk.count(b"event: workspace")

async def main():
    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(dashboard(i, ready)) for i in range(n)]
    tasks += [asyncio.create_task(usage_cards(i)) for i in range(n)]
    tasks += [asyncio.create_task(usage_cards(i, "gpu-share-html", b"gpu-mode", 1)) for i in range(n)]
    for _ in range(n):
        await asyncio.wait_for(ready.acquire(), 60)
    await asyncio.sleep(settle)
    start, before, cards_before, boards_before = time.time(), sum(counts), cards[0], cards[1]
    await asyncio.sleep(duration)
    end = time.time()
    print(f"{start:.3f} {end:.3f} {sum(counts) - before} {cards[0] - cards_before} {cards[1] - boards_before}", flush=True)
    for t in tasks:
        t.cancel()

asyncio.run(main())
PY

pp=$(free_port); pb=$(free_port)
python3 "$work/proxy.py" "$pp" "$SOCKET" "$work/engine.log" 2>"$work/proxy.err" & pids+=($!)
for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $pp))" 2>/dev/null && break; sleep 0.1; done

export BERTH_LISTEN=127.0.0.1:$pb BERTH_DATABASE_URL=sqlite://$work/berth.db BERTH_DATA_DIR=$work/data \
       BERTH_CONFIG=$work/none.toml BERTH_LOG=warn BERTH_DOCKER_HOST=tcp://127.0.0.1:$pp \
       BERTH_WORKSPACE_IMAGE=berth-test/busybox:latest BERTH_STORAGE_ROOT=$work/storage \
       BERTH_PORTS__BASE=32400 BERTH_PORTS__HOST_IP=127.0.0.1 BERTH_WORKSPACE__GPUS=none \
       BERTH_WORKSPACE__ISOLATION=plain BERTH_WORKSPACE__STOP_TIMEOUT_SECONDS=2 BERTH_WORKSPACE__EXTRA_LABEL=$label
"$BIN" serve >/dev/null 2>"$work/berth.log" & pids+=($!)
up=0
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$pb/healthz" >/dev/null && { up=1; break; }; sleep 0.1; done
[ "$up" = 1 ] || { echo "berth did not answer on port $pb; its log:" >&2; cat "$work/berth.log" >&2; exit 1; }
echo "bench-password-long" | "$BIN" user add benchuser --password-stdin >/dev/null
"$BIN" workspace start benchuser >/dev/null
[ "$(docker inspect -f '{{.State.Running}}' workspace-benchuser)" = true ] || { echo "the workspace is not running"; exit 1; }
cookie=$(curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:$pb" \
  --data "username=benchuser&password=bench-password-long" "http://127.0.0.1:$pb/api/login" |
  tr -d '\r' | sed -n 's/^set-cookie: \(berth_session=[^;]*\).*/\1/Ip')
[ -n "$cookie" ] || { echo "login failed"; exit 1; }
sleep 3 # the start's own engine events settle
setup=$(wc -l <"$work/engine.log")
[ "$setup" -gt 0 ] || { echo "the proxy saw no engine call: is BERTH_DOCKER_HOST honoured?"; exit 1; }

# Calls logged between two times, per minute; and which endpoints they were.
per_minute() { awk -v a="$1" -v b="$2" '$1 >= a && $1 < b {n++} END {printf "%.0f", n * 60 / (b - a)}' "$work/engine.log"; }
endpoints() {
  awk -v a="$1" -v b="$2" '$1 >= a && $1 < b {p=$3; sub(/\?.*/, "", p); gsub(/\/v[0-9.]+\//, "/", p); print $2, p}' "$work/engine.log" |
    sort | uniq -c | sort -rn | head -5 | sed 's/^/    /'
}
# Container events of any Berth on this engine in a window: each one may change a view. On a
# shared engine other Berth processes (tests) add theirs, so the table says how many there were.
berth_events() {
  docker events --since "$1" --until "$2" --filter type=container --filter label=io.berth.managed=true \
    --format '{{.Action}}' | wc -l
}
measure() {
  local n=$1 out start end events
  out=$(python3 "$work/dashboards.py" "$pb" "$cookie" "$n" "$DURATION" "$SETTLE")
  read -r start end events cards boards <<<"$out"
  echo "$(per_minute "$start" "$end") $events $cards $boards $(berth_events "$start" "$end") $start $end"
}
now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
i0=$(now); sleep "$DURATION"; i1=$(now); idle=$(per_minute "$i0" "$i1"); idle_events=$(berth_events "$i0" "$i1")
read -r n1 e1 u1 g1 c1 s1 t1 <<<"$(measure 1)"
read -r nm em um gm cm sm tm <<<"$(measure "$MANY")"
echo
echo "| open dashboards (${DURATION} s each) | engine API calls/min | views pushed | usage cards answered | GPU boards answered | Berth container events on the engine meanwhile |"
echo "|---|---|---|---|---|---|"
echo "| 0 | $idle | - | - | - | $idle_events |"
echo "| 1 | $n1 | $e1 | $u1 | $g1 | $c1 |"
echo "| $MANY | $nm | $em | $um | $gm | $cm |"
echo
echo "1 dashboard, engine calls by endpoint:"; endpoints "$s1" "$t1"
echo "$MANY dashboards, engine calls by endpoint:"; endpoints "$sm" "$tm"
echo "(the proxy logged $setup engine calls while the user's workspace was created and started)"
echo
echo "engine calls/min: 1 dashboard $n1, $MANY dashboards $nm"
