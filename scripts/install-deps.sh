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
# Built at opt-level 1 (3.5 minutes on two cores, once a machine; it runs 0.5 s per site build,
# with the same output as at level 3): CI starts on a fresh machine every time.
if [ "$have" != "$want" ]; then
  echo "install-deps: cargo install wasm-bindgen-cli $want (about 4 minutes)"
  PATH=/usr/bin:$PATH cargo --config 'profile.release.opt-level=1' install -q wasm-bindgen-cli --version "$want" --force
fi

# A python that can make a venv (Debian's python is externally managed).
python_with_venv() {
  for c in "$HOME/.pyenv/shims/python3" /usr/local/bin/python3 /usr/bin/python3; do
    if [ -x "$c" ] && "$c" -c 'import venv, ensurepip' 2>/dev/null; then echo "$c"; return; fi
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  echo /usr/bin/python3
}

# binaryen's wasm-opt for the site build (scripts/build-site.sh runs -Oz on the wasm), built from
# source by the wasm-opt crate: Debian's binaryen 108 breaks hydration, npm is out of reach, and
# the one prebuilt binary on PyPI comes inside an unrelated package we cannot vouch for (it would
# process every byte of the code browsers run). Its C++ is compiled at -O1 (opt-level 1): 6.5
# minutes on two cores, once a machine (an earlier session saw about 9 at the default level 3);
# the site's wasm comes out byte for byte the same, and -Oz on it takes 0.6 s longer (2026-12-01).
want_opt="wasm-opt version 116"
if ! wasm-opt --version 2>/dev/null | grep -q "^$want_opt"; then
  echo "install-deps: cargo install wasm-opt 0.116.1 (binaryen 116, about 7 minutes)"
  PATH=/usr/bin:$PATH cargo --config 'profile.release.opt-level=1' install -q wasm-opt --version 0.116.1 --force
fi

# A real OpenID provider for the single sign-on tests, and the OpenAPI validator the API tests
# run on Berth's document, in a venv of their own: .tools/venv/bin/python -m oidc_provider_mock,
# .tools/venv/bin/openapi-spec-validator.
venv=.tools/venv
if [ "${1:-}" != "--run-only" ] && ! "$venv/bin/python" -c 'import oidc_provider_mock, openapi_spec_validator' 2>/dev/null; then
  py=$(python_with_venv)
  echo "install-deps: oidc-provider-mock and openapi-spec-validator into $venv (with $py)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q oidc-provider-mock 'openapi-spec-validator==0.9.*'
fi
