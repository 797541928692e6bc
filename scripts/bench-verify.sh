#!/usr/bin/env bash
# Benchmark: /auth/verify (owner with a valid app-host cookie) vs nginx answering a static 204, same
# machine, same wrk settings, same run. Loopback only. Prints a Markdown table.
# PIN=1 gives the servers CPU 0 and wrk CPU 1 (one nginx worker, one wrk thread), so the load
# generator does not steal the server's core; the default lets them share both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-target/release/berth}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

server_cpu=(); load_cpu=(); nginx_workers=auto
if [ "${PIN:-0}" = 1 ]; then
  # The first two CPUs this script may use: one for the servers, one for wrk.
  read -r cpu_a cpu_b < <(python3 -c 'import os; c = sorted(os.sched_getaffinity(0)); print(*c[:2])')
  [ -n "${cpu_b:-}" ] || { echo "PIN=1 needs two CPUs; this process may use only ${cpu_a:-none}" >&2; exit 1; }
  server_cpu=(taskset -c "$cpu_a"); load_cpu=(taskset -c "$cpu_b"); nginx_workers=1; THREADS=1
fi

pb=$(free_port); pn=$(free_port)
export BERTH_LISTEN=127.0.0.1:$pb BERTH_DATABASE_URL=sqlite://$work/berth.db BERTH_DATA_DIR=$work/data \
       BERTH_CONFIG=$work/none.toml BERTH_DOMAIN=lab.example.org BERTH_LOG=warn
"${server_cpu[@]}" "$BIN" serve >/dev/null 2>"$work/berth.log" & pids+=($!)
up=0
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$pb/healthz" >/dev/null && { up=1; break; }; sleep 0.1; done
[ "$up" = 1 ] || { echo "berth did not answer on port $pb; its log:" >&2; cat "$work/berth.log" >&2; exit 1; }
echo "alice-password-long" | "$BIN" user add alice --password-stdin >/dev/null
cookie=$(curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:$pb" \
  --data "username=alice&password=alice-password-long" "http://127.0.0.1:$pb/api/login" |
  tr -d '\r' | sed -n 's/^set-cookie: \(berth_session=[^;]*\).*/\1/Ip')
[ -n "$cookie" ] || { echo "login failed"; exit 1; }
verify_url="http://127.0.0.1:$pb/auth/verify?owner=alice"
# The app host's own cookie, through the portal's hop as a browser gets it: a one-time code
# from /auth/app, redeemed by forwardAuth at /.berth/auth.
back=$(curl -s -D - -o /dev/null -H "Cookie: $cookie" \
  "http://127.0.0.1:$pb/auth/app?rd=http%3A%2F%2Falice-code.lab.example.org%2F" |
  tr -d '\r' | sed -n 's|^location: http://alice-code.lab.example.org\(/.*\)|\1|Ip')
[ -n "$back" ] || { echo "the portal gave no code for alice's app host"; exit 1; }
app_cookie=$(curl -s -D - -o /dev/null -H "X-Forwarded-Host: alice-code.lab.example.org" -H "X-Forwarded-Proto: http" \
  -H "X-Forwarded-Uri: $back" -H "Accept: text/html" "$verify_url" |
  tr -d '\r' | sed -n 's/^set-cookie: \(berth_app=[^;]*\).*/\1/Ip')
[ -n "$app_cookie" ] || { echo "forwardAuth did not redeem the code"; exit 1; }
hdrs=(-H "Cookie: $app_cookie" -H "X-Forwarded-Host: alice-code.lab.example.org" -H "Accept: */*")
code=$(curl -s -o /dev/null -w '%{http_code}' "${hdrs[@]}" "$verify_url")
[ "$code" = 200 ] || { echo "verify answered $code, not 200"; exit 1; }

cat > "$work/nginx.conf" <<NGINX
worker_processes $nginx_workers;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$pn; location / { return 204; } }
}
NGINX
"${server_cpu[@]}" nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
sleep 0.5

run() { "${load_cpu[@]}" wrk -t"${THREADS:-2}" -c"$CONNS" -d"$DURATION" --latency "$@"; }
parse() {
  local out=$1
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  echo "$rps|$p99|${non2xx:-0}"
}
run "${hdrs[@]}" "$verify_url" >/dev/null # warm-up
b=$(parse "$(run "${hdrs[@]}" "$verify_url")")
n=$(parse "$(run "http://127.0.0.1:$pn/")")
IFS='|' read -r b_rps b_p99 b_bad <<<"$b"
IFS='|' read -r n_rps n_p99 n_bad <<<"$n"
ratio=$(python3 -c "print(f'{$b_rps/$n_rps:.2f}')")
echo
echo "| target ($CONNS connections, $DURATION, wrk -t${THREADS:-2}, PIN=${PIN:-0}) | requests/s | p99 latency | non-2xx |"
echo "|---|---|---|---|"
echo "| Berth /auth/verify (owner, valid app cookie) | $b_rps | $b_p99 | $b_bad |"
echo "| nginx static 204 | $n_rps | $n_p99 | $n_bad |"
echo
echo "Berth / nginx throughput ratio: $ratio"
