#!/usr/bin/env bash
# Removes what an earlier test run left on this engine because it was killed before its clean-up
# ran (a session ended mid-run, kill -9): Swarm services, containers and networks labelled
# io.berth.test, and a swarm the tests made (its node carries io.berth.test.swarm). Their names
# and ports are the ones the next run uses, so a leftover would fail it. Anything else on the
# engine is left alone. Run by `make test` before the suites; never while tests run.
set -uo pipefail

filter=label=io.berth.test
if [ "$(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]; then
    docker service ls -q --filter "$filter" | xargs -r docker service rm >/dev/null
fi
docker ps -aq --filter "$filter" | xargs -r docker rm -f >/dev/null
for net in $(docker network ls -q --filter "$filter"); do
    for _ in $(seq 20); do
        docker network rm "$net" >/dev/null 2>&1 && break
        sleep 0.5
    done
done
# A swarm some test process or bench uses right now holds this lock: not a leftover.
exec 9>/tmp/berth-test-swarm.lock
if [ "$(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ] && flock -n 9; then
    node=$(docker info -f '{{.Swarm.NodeID}}')
    marker=$(docker node inspect -f '{{index .Spec.Labels "io.berth.test.swarm"}}' "$node" 2>/dev/null)
    if [ -n "$marker" ] && [ "$marker" != "<no value>" ]; then
        echo "sweep: leaving the swarm an earlier test run made"
        docker swarm leave --force >/dev/null
    fi
fi
left=$(docker ps -aq --filter "$filter" | wc -l)
[ "$left" -eq 0 ] || echo "sweep: $left labelled container(s) could not be removed" >&2
exit 0
