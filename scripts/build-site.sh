#!/usr/bin/env bash
# Builds the hydrate wasm with Debian's rustc-web (rustup has no wasm32 std here) and lays
# out target/site the way the server serves it:
#   target/site/pkg/berth.<hash>.{js,wasm,css}  content-hashed names (cached a year, immutable),
#   each with .br and .gz beside it            (served precompressed, server/src/web_static.rs),
#   target/site/hash.txt                       the hashes in Leptos' format (js:/wasm:/css:),
#                                              which names them in every page.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/bin:$HOME/.cargo/bin:$PATH RUSTC_BOOTSTRAP=1 LEPTOS_OUTPUT_NAME=berth
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/bin/rust-lld

# binaryen's optimiser, built from the wasm-opt crate by scripts/install-deps.sh into
# ~/.cargo/bin (Debian's binaryen 108 breaks hydration: never fall back to it).
wasm_opt=${WASM_OPT:-$HOME/.cargo/bin/wasm-opt}
if ! "$wasm_opt" --version 2>/dev/null | grep -q "^wasm-opt version 116"; then
  echo "build-site: binaryen 116's wasm-opt missing at $wasm_opt: run scripts/install-deps.sh" >&2
  exit 1
fi
for tool in brotli gzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "build-site: $tool missing: run scripts/install-deps.sh" >&2; exit 1; }
done

cargo build -q -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release \
  -Zbuild-std=std,panic_abort --target-dir target/front

# Built aside, then swapped in whole: a running server never sees half a site.
stage=target/site.new
rm -rf "$stage"
mkdir -p "$stage/pkg"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
  --out-dir "$stage/pkg" --out-name berth target/front/wasm32-unknown-unknown/wasm-release/frontend.wasm
"$wasm_opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$stage/pkg/berth_bg.wasm" -o "$stage/pkg/berth.wasm"
rm "$stage/pkg/berth_bg.wasm"
cp style/main.css "$stage/pkg/berth.css"
cp -r public/. "$stage/"

hashes=""
for ext in js wasm css; do
  hash=$(sha256sum "$stage/pkg/berth.$ext" | cut -c1-16)
  mv "$stage/pkg/berth.$ext" "$stage/pkg/berth.$hash.$ext"
  brotli -q 11 -k -f "$stage/pkg/berth.$hash.$ext"
  gzip -9 -n -k -f "$stage/pkg/berth.$hash.$ext"
  hashes+="$ext: $hash"$'\n'
done
printf '%s' "$hashes" > "$stage/hash.txt"

rm -rf target/site.old
if [ -e target/site ]; then mv target/site target/site.old; fi
mv "$stage" target/site
rm -rf target/site.old
ls -l target/site/pkg | awk 'NR>1 {printf "build-site: %9d  %s\n", $5, $9}'
