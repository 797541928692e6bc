#!/usr/bin/env bash
# Build the Berth workspace image. The one entry point for both profiles.
#
#   build.sh --profile slim|full [--base IMAGE] [--tag TAG] [options]
#
#   --profile slim|full     slim: SSH, VNC/noVNC, RDP, Jupyter, TensorBoard, Docker-in-Docker,
#                           Openbox desktop; full: slim + KDE, X2Go, apps, languages, ML stack
#   --base IMAGE            base image (default: ubuntu:24.04 when that image is present locally,
#                           else berth/debian-base:bookworm, made by make-base.sh when missing)
#   --tag TAG               default berth/workspace:slim (slim) or berth/workspace:latest (full)
#   --apt-mirror URL        Debian/Ubuntu archive mirror (rewrites the base's apt sources)
#   --apt-security-mirror URL
#   --pip-index URL         pip index (also written to /etc/pip.conf in the image)
#   --pip-extra-index URL   --pip-trusted-host HOST
#   --ca-bundle FILE        extra CA certificate(s), PEM, one or many per file (repeatable; e.g.
#                           a TLS-inspecting proxy's CA); trusted at build time and in the image
#   --code-server-deb URL|FILE   code-server release .deb (full only; skipped when absent)
#   --julia URL|FILE        Julia release tarball linux-x86_64 (full only; skipped when absent)
#   --torch-index URL       pip index for torch (full), e.g. https://download.pytorch.org/whl/cpu
#   --extra-pip "PKGS"      more pip requirements for full, e.g. "tensorflow[and-cuda] jax[cuda12]"
#   --build-arg K=V         passed on to docker build (repeatable)
#   --no-cache              passed on to docker build
#   --dry-run               print the docker build command and stop
#
# Builds run with --network host so apt and pip inside reach the host's network.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print } /^set /{ exit }' "$0"; }
die() { echo "build.sh: $*" >&2; exit 2; }

PROFILE="" BASE="${BERTH_BASE_IMAGE:-}" TAG="" CODE_SERVER="" JULIA="" DRY=0
ARGS=()
CAS=()
while [ $# -gt 0 ]; do
    opt="$1"
    case "$opt" in
        --profile) PROFILE="${2:-}"; shift ;;
        --base) BASE="${2:?--base needs an image}"; shift ;;
        --tag) TAG="${2:?--tag needs a value}"; shift ;;
        --apt-mirror) ARGS+=(--build-arg "APT_MIRROR=${2:?}"); shift ;;
        --apt-security-mirror) ARGS+=(--build-arg "APT_SECURITY_MIRROR=${2:?}"); shift ;;
        --pip-index) ARGS+=(--build-arg "PIP_INDEX_URL=${2:?}"); shift ;;
        --pip-extra-index) ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=${2:?}"); shift ;;
        --pip-trusted-host) ARGS+=(--build-arg "PIP_TRUSTED_HOST=${2:?}"); shift ;;
        --ca-bundle) CAS+=("${2:?--ca-bundle needs a file}"); shift ;;
        --code-server-deb) CODE_SERVER="${2:?}"; shift ;;
        --julia) JULIA="${2:?}"; shift ;;
        --torch-index) ARGS+=(--build-arg "TORCH_INDEX_URL=${2:?}"); shift ;;
        --extra-pip) ARGS+=(--build-arg "EXTRA_PIP_PACKAGES=${2:?}"); shift ;;
        --build-arg) ARGS+=(--build-arg "${2:?}"); shift ;;
        --no-cache) ARGS+=(--no-cache) ;;
        --dry-run) DRY=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $opt" ;;
    esac
    shift
done

case "$PROFILE" in
    slim) TAG="${TAG:-berth/workspace:slim}" ;;
    full) TAG="${TAG:-berth/workspace:latest}" ;;
    *) usage >&2; die "--profile slim|full is required" ;;
esac

if [ -z "$BASE" ]; then
    if docker image inspect ubuntu:24.04 >/dev/null 2>&1; then BASE=ubuntu:24.04
    else BASE=berth/debian-base:bookworm; fi
fi
if [[ "$BASE" == berth/debian-base:* ]] && ! docker image inspect "$BASE" >/dev/null 2>&1; then
    [ "$DRY" = 1 ] || "$HERE/make-base.sh" --tag "$BASE" --suite "${BASE#berth/debian-base:}"
fi

# The build context: this folder's build files plus the extras named on the command line.
CTX="$(mktemp -d /tmp/berth-workspace-ctx.XXXXXX)"
trap 'rm -rf "$CTX"' EXIT
cp -a "$HERE/Dockerfile" "$HERE/entrypoint.sh" "$HERE/supervisord.conf" \
      "$HERE/supervisor" "$HERE/bin" "$HERE"/requirements-*.txt "$HERE/extra" "$CTX/"
mkdir -p "$CTX/extra/ca" "$CTX/extra/debs"
n=0
for ca in ${CAS[@]+"${CAS[@]}"}; do
    [ -s "$ca" ] || die "--ca-bundle: no such file: $ca"
    grep -q 'BEGIN CERTIFICATE' "$ca" || die "--ca-bundle: $ca has no PEM certificate"
    # One certificate per file, as update-ca-certificates expects.
    n=$(awk -v dir="$CTX/extra/ca" -v n="$n" '
        /-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/berth-extra-%03d.crt", dir, n) }
        f { print > f }
        /-----END CERTIFICATE-----/ { close(f); f = "" }
        END { print n }' "$ca")
done
[ "$n" = 0 ] || echo "build.sh: $n extra CA certificate(s)"
fetch_or_copy() { # SRC DEST BUILD_ARG: a local file goes into the context, a URL into the build arg
    if [ -f "$1" ]; then cp "$1" "$2"
    elif [[ "$1" =~ ^https?:// ]]; then ARGS+=(--build-arg "$3=$1")
    else die "no such file or URL: $1"; fi
}
[ -z "$CODE_SERVER" ] || fetch_or_copy "$CODE_SERVER" "$CTX/extra/debs/code-server.deb" CODE_SERVER_DEB_URL
[ -z "$JULIA" ] || fetch_or_copy "$JULIA" "$CTX/extra/julia.tar.gz" JULIA_TARBALL_URL

VCS_REF="$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown)"
cmd=(docker build --network host --force-rm --target "$PROFILE" -t "$TAG"
     --build-arg "BASE_IMAGE=$BASE"
     --build-arg "BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
     --build-arg "VCS_REF=$VCS_REF"
     ${ARGS[@]+"${ARGS[@]}"} "$CTX")
echo "build.sh: profile $PROFILE, base $BASE, tag $TAG"
echo "build.sh: ${cmd[*]}"
[ "$DRY" = 1 ] && exit 0
start=$(date +%s)
"${cmd[@]}"
echo "build.sh: built $TAG in $(( $(date +%s) - start ))s"
docker image inspect --format 'build.sh: {{.Id}} size {{.Size}} bytes' "$TAG"
