#!/usr/bin/env bash
# Make sure a Docker engine answers on the default socket; start one when none does.
# The machines Berth is tested on start dockerd at boot, but a daemon can be gone by the time a
# test run begins (a session that restarted it by hand ends, the daemon crashed), and every
# workspace test needs it. Debian's init script cannot be trusted here: it fails on `ulimit`
# inside some sandboxes, so the daemon is started directly when the script does not do it.
set -euo pipefail

log=${BERTH_DOCKERD_LOG:-/var/log/berth-dockerd.log}
# A wedged daemon must not hang the caller: every question to it has a deadline.
answers() { timeout 10 docker info >/dev/null 2>&1; }

if answers; then
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
    echo "ensure-docker: DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local daemon" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-docker: the Docker engine does not answer and only root can start it" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "ensure-docker: no Docker engine answers and dockerd is not installed" >&2
    exit 1
fi

# Two make runs at once must not both start a daemon.
exec 9>/run/berth-ensure-docker.lock
flock 9
if answers; then
    exit 0
fi
echo "ensure-docker: the Docker engine does not answer; starting it" >&2
if ! timeout 30 service docker start >/dev/null 2>&1 9>&- || ! timeout 20 sh -c 'until timeout 5 docker info >/dev/null 2>&1; do sleep 1; done'; then
    # A daemon that died leaves its pid file behind; dockerd refuses to start while it names a
    # live process, so only a stale one is removed.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    if ! pidof dockerd >/dev/null; then
        echo "ensure-docker: starting dockerd directly (log: $log)" >&2
        setsid nohup dockerd >>"$log" 2>&1 </dev/null 9>&- &
    fi
fi

for _ in $(seq 1 60); do
    if answers; then
        echo "ensure-docker: the Docker engine answers" >&2
        exit 0
    fi
    sleep 1
done
echo "ensure-docker: the Docker engine did not come up within 60 s; the end of its log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
