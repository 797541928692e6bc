# One toolchain for the whole workspace: Debian's rustc-web (it alone can build the wasm std here).
export PATH := /usr/bin:$(HOME)/.cargo/bin:$(PATH)
export LEPTOS_OUTPUT_NAME := berth
CARGO ?= cargo

.PHONY: run test deps build site server e2e unit bench clean

## Serve Berth on 127.0.0.1:3000 with the embedded SQLite database (honours BERTH_* variables).
run: deps build
	./target/debug/berth serve

## The whole test suite: unit, integration on SQLite and PostgreSQL, browser.
test: deps-test build
	BERTH_TEST_POSTGRES_URL=$$(scripts/ensure-postgres.sh) $(CARGO) test -p server
	$(CARGO) test -p end2end -- --test-threads=1

## Browser tests only.
e2e: deps-test build
	$(CARGO) test -p end2end -- --test-threads=1

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
