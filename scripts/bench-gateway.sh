#!/usr/bin/env bash
# Benchmark: a static file of the test workspace (busybox httpd, 16 KiB) through Berth's app
# gateway (owner's app cookie, the full owner-only check per request) vs straight from the
# container's address, same wrk settings, same run. Prints a Markdown table with p99.
# busybox httpd closes every connection after one answer, so both paths pay a TCP connection
# to the workspace per request; the gateway's own cost is the difference.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-target/release/berth}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
IMAGE=berth-test/busybox:latest
work=$(mktemp -d)
label="io.berth.test=bench-gateway-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker network ls -q --filter "label=$label" | xargs -r docker network rm >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
docker image inspect "$IMAGE" >/dev/null || { echo "$IMAGE missing: scripts/build-test-image.sh" >&2; exit 1; }

pb=$(free_port)
export BERTH_LISTEN=127.0.0.1:$pb BERTH_DATABASE_URL=sqlite://$work/berth.db BERTH_DATA_DIR=$work/data \
       BERTH_CONFIG=$work/none.toml BERTH_LOG=warn BERTH_WORKSPACE_IMAGE=$IMAGE \
       BERTH_STORAGE_ROOT=$work/storage BERTH_PORTS__BASE=32000 BERTH_PORTS__HOST_IP=127.0.0.1 \
       BERTH_WORKSPACE__GPUS=none BERTH_WORKSPACE__ISOLATION=plain BERTH_WORKSPACE__EXTRA_LABEL=$label \
       BERTH_WORKSPACE__STOP_TIMEOUT_SECONDS=2
"$BIN" serve >/dev/null 2>"$work/berth.log" & pids+=($!)
up=0
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$pb/healthz" >/dev/null && { up=1; break; }; sleep 0.1; done
[ "$up" = 1 ] || { echo "berth did not answer on port $pb; its log:" >&2; cat "$work/berth.log" >&2; exit 1; }
echo "alice-password-long" | "$BIN" user add alice --password-stdin >/dev/null
cookie=$(curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:$pb" \
  --data "username=alice&password=alice-password-long" "http://127.0.0.1:$pb/api/login" |
  tr -d '\r' | sed -n 's/^set-cookie: \(berth_session=[^;]*\).*/\1/Ip')
[ -n "$cookie" ] || { echo "login failed" >&2; exit 1; }
curl -fs -o /dev/null -H "Origin: http://127.0.0.1:$pb" -H "Cookie: $cookie" --data "action=start" \
  "http://127.0.0.1:$pb/api/workspace-action" || { echo "start failed" >&2; exit 1; }
for _ in $(seq 300); do
  [ "$(docker inspect -f '{{.State.Running}}' workspace-alice 2>/dev/null)" = true ] && break; sleep 0.2
done
docker exec workspace-alice sh -c 'head -c 16384 /dev/zero | tr "\0" x > /www/bench.html'
ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' workspace-alice)
[ -n "$ip" ] || { echo "no address for the workspace" >&2; exit 1; }

host=jupyter-alice.localhost
resolve=(--resolve "$host:$pb:127.0.0.1")
# The app host's cookie as a browser gets it: gateway → portal hop (code) → gateway redeems.
hop=$(curl -s -D - -o /dev/null "${resolve[@]}" -H "Accept: text/html" "http://$host:$pb/bench.html" |
  tr -d '\r' | sed -n 's/^location: //Ip')
code_url=$(curl -s -D - -o /dev/null -H "Cookie: $cookie" "$hop" | tr -d '\r' | sed -n 's/^location: //Ip')
app_cookie=$(curl -s -D - -o /dev/null "${resolve[@]}" -H "Accept: text/html" "$code_url" |
  tr -d '\r' | sed -n 's/^set-cookie: \(berth_app=[^;]*\).*/\1/Ip')
[ -n "$app_cookie" ] || { echo "the gateway did not redeem the code" >&2; exit 1; }
through=(-H "Host: $host:$pb" -H "Cookie: $app_cookie" "http://127.0.0.1:$pb/bench.html")
size=$(curl -fs "${through[@]}" -o - | wc -c)
[ "$size" = 16384 ] || { echo "through the gateway: $size bytes, not 16384" >&2; exit 1; }

run() { wrk -t"${THREADS:-2}" -c"$CONNS" -d"$DURATION" --latency "$@"; }
parse() {
  local out=$1
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out")|$(awk '$1=="99%" {print $2}' <<<"$out")|$(awk '/Non-2xx/ {print $5}' <<<"$out")"
}
run "${through[@]}" >/dev/null # warm-up
g=$(parse "$(run "${through[@]}")")
d=$(parse "$(run "http://$ip:8888/bench.html")")
IFS='|' read -r g_rps g_p99 g_bad <<<"$g"
IFS='|' read -r d_rps d_p99 d_bad <<<"$d"
echo
echo "| 16 KiB static file ($CONNS connections, $DURATION, wrk -t${THREADS:-2}) | requests/s | p99 latency | non-2xx |"
echo "|---|---|---|---|"
echo "| through Berth's app gateway (owner's cookie) | $g_rps | $g_p99 | ${g_bad:-0} |"
echo "| straight from the workspace container | $d_rps | $d_p99 | ${d_bad:-0} |"
echo
echo "gateway / direct throughput ratio: $(python3 -c "print(f'{$g_rps/$d_rps:.2f}')")"
