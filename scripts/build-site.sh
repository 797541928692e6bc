#!/usr/bin/env bash
# Builds the hydrate wasm with Debian's rustc-web (rustup has no wasm32 std here) and lays
# out target/site the way leptos_axum serves it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/bin:$HOME/.cargo/bin:$PATH RUSTC_BOOTSTRAP=1 LEPTOS_OUTPUT_NAME=berth
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/bin/rust-lld
cargo build -q -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release \
  -Zbuild-std=std,panic_abort --target-dir target/front
mkdir -p target/site/pkg
wasm-bindgen --target web --no-typescript --out-dir target/site/pkg --out-name berth \
  target/front/wasm32-unknown-unknown/wasm-release/frontend.wasm
mv target/site/pkg/berth_bg.wasm target/site/pkg/berth.wasm
cp style/main.css target/site/pkg/berth.css
cp -r public/. target/site/
