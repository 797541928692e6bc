#!/usr/bin/env bash
# Benchmark: the login page's first visit in headless Chromium (fresh profile each round:
# nothing cached) against a release `berth serve` with the built site. Prints the bytes on
# the wire per file (Navigation/Resource Timing transferSize: headers + body as sent) and
# their total, and the time from navigation start to hydrated (the page's `berth:hydrated`
# performance mark). Targets: <= 400 KB, <= 1.5 s. Needs `make site` and a release server.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/bin:$HOME/.cargo/bin:$PATH LEPTOS_OUTPUT_NAME=berth
export BERTH_BIN=${BERTH_BIN:-$PWD/target/release/berth}
[ -x "$BERTH_BIN" ] || { echo "bench-page: $BERTH_BIN missing: cargo build -p server --release" >&2; exit 1; }
[ -f target/site/hash.txt ] || { echo "bench-page: no site: scripts/build-site.sh" >&2; exit 1; }

echo "bench-page: site files (bytes: raw / brotli / gzip)"
for ext in js wasm css; do
  f=$(ls target/site/pkg/berth.*."$ext")
  printf 'bench-page:   %-36s %9d / %8d / %8d\n' "$(basename "$f")" \
    "$(stat -c %s "$f")" "$(stat -c %s "$f.br")" "$(stat -c %s "$f.gz")"
done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
BENCH_ROUNDS=${ROUNDS:-5} cargo test -q -p end2end --test browser -- --ignored --exact bench_first_page \
  --nocapture --test-threads=1 >"$out" 2>&1 || { cat "$out"; exit 1; }
grep '^bench-page:' "$out"
