# One toolchain for the whole workspace: Debian's rustc-web (it alone can build the wasm std here).
export PATH := /usr/bin:$(HOME)/.cargo/bin:$(PATH)
export LEPTOS_OUTPUT_NAME := berth
# The shared test data (Traefik schema, Guacamole vector) sits beside the checkout; a clone made
# elsewhere finds the workplace copy.
export BERTH_SHARED_DIR ?= $(firstword $(wildcard $(CURDIR)/../shared /work/shared))
CARGO ?= cargo

.PHONY: run test deps deps-test docker-engine build site server e2e test-image image portal-image bench clean

## Serve Berth on 127.0.0.1:3000 with the embedded SQLite database (honours BERTH_* variables).
## For a local run, workspaces use the slim image (`make image`) and keep their files under ./data.
run: deps build
	@# Berth serves without an engine too (the dashboard says it is unreachable), so a failure
	@# to start one is only a warning here.
	-scripts/ensure-docker.sh
	BERTH_WORKSPACE_IMAGE=$${BERTH_WORKSPACE_IMAGE:-berth/workspace:slim} \
	BERTH_STORAGE_ROOT=$${BERTH_STORAGE_ROOT:-$(CURDIR)/data/storage} \
	./target/debug/berth serve

## The whole test suite: unit, integration on SQLite and PostgreSQL, browser.
test: deps-test docker-engine build test-image image
	@# Again just before the suites: a daemon can go away during the long build.
	scripts/ensure-docker.sh
	@# A run killed before its clean-up leaves labelled containers on the ports this one uses.
	scripts/sweep-test-leftovers.sh
	scripts/check-compose.sh
	@# Both suites run even when the first fails, so one run shows every failure.
	pg_url=$$(scripts/ensure-postgres.sh) || exit 1; status=0; \
	$(CARGO) test -p app --lib --features ssr || status=1; \
	BERTH_TEST_POSTGRES_URL=$$pg_url $(CARGO) test -p server --no-fail-fast || status=1; \
	$(CARGO) test -p end2end --no-fail-fast -- --test-threads=1 || status=1; \
	exit $$status

## Browser tests only.
e2e: deps-test docker-engine build test-image
	$(CARGO) test -p end2end -- --test-threads=1

## The tiny busybox image the lifecycle tests run (no registry needed).
test-image: docker-engine
	scripts/build-test-image.sh

## Berth's own image for docker/compose.yaml.
portal-image: site
	$(CARGO) build -p server --release
	docker build -f docker/portal/Dockerfile -t berth/portal:latest .

## Benchmarks (release build): forwardAuth vs nginx, workspace start vs docker start, the
## login page's bytes on the wire and time to hydrated in headless Chromium, engine calls with
## 1 vs 200 open dashboards, a workspace's static file through the app gateway vs direct, and
## what sampling 100 running workspaces costs Berth against an idle Berth, a token-checked API call
## against the health check, and a start through Swarm against one on the plain engine.
bench: deps-test docker-engine site test-image
	$(CARGO) build -p server --release
	PIN=1 scripts/bench-verify.sh
	THREADS=1 scripts/bench-verify.sh
	scripts/bench-start.sh
	scripts/bench-page.sh
	scripts/bench-dashboards.sh
	scripts/bench-gateway.sh
	scripts/bench-sampling.sh
	scripts/bench-api.sh
	scripts/bench-swarm.sh

## The real workspace image (slim profile builds here in minutes; full is for production sites).
image: docker-engine
	scripts/build-workspace-image.sh

## Start the Docker engine when it does not answer (it may be gone after a reboot or a crash).
docker-engine:
	scripts/ensure-docker.sh

deps:
	scripts/install-deps.sh --run-only

deps-test:
	scripts/install-deps.sh

build: site server

site:
	scripts/build-site.sh

server:
	$(CARGO) build -p server

clean:
	rm -rf target
