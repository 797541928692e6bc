#!/bin/bash
# Berth workspace entrypoint: runs as root at every container start, prepares the user from
# the portal's BERTH_* variables, then execs supervisord (PID 1), which runs the services.
#
# Contract (see README.md):
#   BERTH_USER (^[a-z][a-z0-9-]{1,30}$), BERTH_UID, BERTH_GID (numeric, >= 1000),
#   BERTH_PASSWORD (SSH/sudo/xrdp), BERTH_VNC_PASSWORD, BERTH_JUPYTER_TOKEN,
#   BERTH_APP_SECRET (hex; the app gate in front of code-server and TensorBoard).
#   Optional: BERTH_DISABLE_SERVICES (comma list, e.g. "xrdp,xrdp-sesman,dockerd"),
#   BERTH_TENSORBOARD_PORT, BERTH_CODE_SERVER_PORT (their loopback ports behind the gate).
#   Mounts: /home/$BERTH_USER (persistent), /workspace, /shared (ro),
#   /shared/tensorboard/$BERTH_USER (rw), /var/lib/state (persistent, root's).
#   Berth also mounts a fresh tmpfs on /run.
# Any other command given to the container runs instead of supervisord, after the setup.
set -euo pipefail

log() { echo "berth-entrypoint: $*" >&2; }
die() { log "error: $*"; exit 64; }

U="${BERTH_USER:-}"
UID_="${BERTH_UID:-}"
GID_="${BERTH_GID:-}"
[[ "$U" =~ ^[a-z][a-z0-9-]{1,30}$ ]] || die "BERTH_USER must match ^[a-z][a-z0-9-]{1,30}\$ (got '${U}')"
[[ "$UID_" =~ ^[0-9]+$ ]] && [ "$UID_" -ge 1000 ] && [ "$UID_" -le 2147483646 ] \
    || die "BERTH_UID must be a number >= 1000 (got '${UID_}')"
[[ "$GID_" =~ ^[0-9]+$ ]] && [ "$GID_" -ge 1000 ] && [ "$GID_" -le 2147483646 ] \
    || die "BERTH_GID must be a number >= 1000 (got '${GID_}')"
case "${BERTH_PASSWORD:-}${BERTH_VNC_PASSWORD:-}${BERTH_JUPYTER_TOKEN:-}" in
    *$'\n'*|*$'\r'*) die "passwords and tokens must not contain line breaks" ;;
esac
APP_SECRET="${BERTH_APP_SECRET:-}"
# It goes verbatim into nginx's configuration: hex cannot break out of the quoted string.
if [ -n "$APP_SECRET" ] && ! [[ "$APP_SECRET" =~ ^[0-9a-fA-F]{32,128}$ ]]; then
    die "BERTH_APP_SECRET must be 32 to 128 hex digits (got ${#APP_SECRET} characters that are not)"
fi
# The app gate owns the public ports; the services behind it listen on loopback ports.
GATE_TENSORBOARD=6006 GATE_CODE=8443
BERTH_TENSORBOARD_PORT="${BERTH_TENSORBOARD_PORT:-16006}"
BERTH_CODE_SERVER_PORT="${BERTH_CODE_SERVER_PORT:-18443}"
for var in BERTH_TENSORBOARD_PORT BERTH_CODE_SERVER_PORT; do
    p="${!var}"
    [[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -ge 1024 ] && [ "$p" -le 65535 ] \
        && [ "$p" != "$GATE_TENSORBOARD" ] && [ "$p" != "$GATE_CODE" ] \
        || die "$var must be a port from 1024 to 65535 other than $GATE_TENSORBOARD and $GATE_CODE (got '$p')"
done
[ "$BERTH_TENSORBOARD_PORT" != "$BERTH_CODE_SERVER_PORT" ] \
    || die "BERTH_TENSORBOARD_PORT and BERTH_CODE_SERVER_PORT must differ (both $BERTH_CODE_SERVER_PORT)"
HOME_DIR="/home/$U"
STATE=/var/lib/state

# --- group and user with exactly BERTH_GID / BERTH_UID (idempotent) -------------------------
if cur="$(id -u "$U" 2>/dev/null)" && [ "$cur" != "$UID_" ]; then
    log "user $U has uid $cur in the image; recreating it with uid $UID_"
    userdel "$U"
fi
if other="$(getent passwd "$UID_" | cut -d: -f1)" && [ -n "$other" ] && [ "$other" != "$U" ]; then
    log "uid $UID_ belongs to '$other' in the image; removing that account"
    userdel "$other"
fi
if cur="$(getent group "$U" | cut -d: -f3)" && [ -n "$cur" ] && [ "$cur" != "$GID_" ]; then
    if getent group "$GID_" >/dev/null; then groupdel "$U"; else groupmod -g "$GID_" "$U"; fi
fi
if other="$(getent group "$GID_" | cut -d: -f1)" && [ -n "$other" ] && [ "$other" != "$U" ]; then
    log "gid $GID_ is group '$other' in the image; renaming it to $U"
    groupmod -n "$U" "$other"
fi
getent group "$U" >/dev/null || groupadd -g "$GID_" "$U"
if id -u "$U" >/dev/null 2>&1; then
    usermod -g "$GID_" -d "$HOME_DIR" -s /bin/bash "$U"
else
    useradd -u "$UID_" -g "$GID_" -M -d "$HOME_DIR" -s /bin/bash -c "Berth user" "$U"
fi
extra_groups=sudo
for g in docker audio video plugdev fuse; do
    getent group "$g" >/dev/null && extra_groups="$extra_groups,$g"
done
usermod -a -G "$extra_groups" "$U"

# Whose keys /etc/berth/keys holds (berth-authorized-keys answers sshd for this user only).
mkdir -p /etc/berth
printf '%s\n' "$U" > /etc/berth/user
chmod 0644 /etc/berth/user

# berth-set-credentials is also what Berth runs when a password changes while the container
# runs; --restore keeps such a change across a restart of this same container.
set_credentials=/usr/local/lib/berth/berth-set-credentials
if ! "$set_credentials" --restore ssh; then
    if [ -n "${BERTH_PASSWORD:-}" ]; then
        printf '%s\n' "$BERTH_PASSWORD" | "$set_credentials" ssh
    else
        log "warning: BERTH_PASSWORD is empty: password login and sudo are disabled (SSH keys still work)"
        usermod -p '!' "$U"
    fi
fi

as_user() { setpriv --reuid="$UID_" --regid="$GID_" --init-groups env HOME="$HOME_DIR" USER="$U" "$@"; }

# --- home: fix only the top directory; copy the skeleton once --------------------------------
mkdir -p "$HOME_DIR"
first_start=0
[ -e "$HOME_DIR/.berth-initialized" ] || first_start=1
chown "$UID_:$GID_" "$HOME_DIR"
if [ "$first_start" = 1 ]; then
    chmod 0750 "$HOME_DIR"
    # As the user, so the copies are the user's and no symlink in the home can redirect a write.
    as_user cp -rn --no-preserve=ownership /etc/skel/. "$HOME_DIR/" \
        || log "warning: some skeleton files were not copied (existing files are kept)"
    as_user touch "$HOME_DIR/.berth-initialized"
    log "initialised $HOME_DIR from /etc/skel"
fi

# --- VNC password, written by the user into ~/.vnc/passwd -------------------------------------
if [ -n "${BERTH_VNC_PASSWORD:-}" ] && command -v vncpasswd >/dev/null; then
    "$set_credentials" --restore vnc || printf '%s\n' "$BERTH_VNC_PASSWORD" | "$set_credentials" vnc
fi

# --- persistent per-user state: SSH host keys, xrdp TLS key, machine id ----------------------
if ! mountpoint -q "$STATE"; then
    log "warning: $STATE is not a mount: host keys will change when the container is recreated"
fi
mkdir -p "$STATE/ssh"
chmod 0700 "$STATE" "$STATE/ssh"
for t in rsa ecdsa ed25519; do
    key="ssh_host_${t}_key"
    if [ -s "$STATE/ssh/$key" ] && [ -s "$STATE/ssh/$key.pub" ]; then
        cp "$STATE/ssh/$key" "$STATE/ssh/$key.pub" /etc/ssh/
    else
        rm -f "/etc/ssh/$key" "/etc/ssh/$key.pub"
        ssh-keygen -q -t "$t" -N '' -C "berth-$U" -f "/etc/ssh/$key"
        cp "/etc/ssh/$key" "/etc/ssh/$key.pub" "$STATE/ssh/"
        log "generated SSH host key $key"
    fi
    chmod 0600 "/etc/ssh/$key" "$STATE/ssh/$key"
    chmod 0644 "/etc/ssh/$key.pub"
done
if [ -d /etc/xrdp ] && command -v openssl >/dev/null; then
    mkdir -p "$STATE/xrdp"; chmod 0700 "$STATE/xrdp"
    if [ ! -s "$STATE/xrdp/key.pem" ] || [ ! -s "$STATE/xrdp/cert.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=berth-$U" \
            -keyout "$STATE/xrdp/key.pem" -out "$STATE/xrdp/cert.pem" 2>/dev/null
    fi
    install -m 0600 "$STATE/xrdp/key.pem" /etc/xrdp/key.pem
    install -m 0644 "$STATE/xrdp/cert.pem" /etc/xrdp/cert.pem
fi
if [ ! -s "$STATE/machine-id" ]; then
    if command -v dbus-uuidgen >/dev/null; then dbus-uuidgen > "$STATE/machine-id"
    else tr -d '-' < /proc/sys/kernel/random/uuid > "$STATE/machine-id"; fi
fi
cp "$STATE/machine-id" /etc/machine-id
[ -d /var/lib/dbus ] && ln -sf /etc/machine-id /var/lib/dbus/machine-id

# --- runtime directories and stale files from a previous run ---------------------------------
# Berth mounts a fresh tmpfs on /run (an image run by hand may not): make what lives there.
mkdir -p /run/sshd /run/dbus /run/xrdp /run/lock /var/log/supervisor /tmp/.X11-unix /tmp/.ICE-unix
chmod 1777 /run/lock /tmp/.X11-unix /tmp/.ICE-unix
rm -f /tmp/.X*-lock /tmp/.X11-unix/X* /run/dbus/pid /run/supervisord.pid /run/supervisor.sock
install -d -m 0700 -o "$UID_" -g "$GID_" "/run/user/$UID_"

# cgroup v2 (as docker's dind script does): move our processes out of the root cgroup so that
# the nested dockerd can enable controllers for its containers.
if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ -w /sys/fs/cgroup/cgroup.subtree_control ]; then
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
    sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
        > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
fi

# --- the app gate in front of code-server and TensorBoard -------------------------------------
# Neither has auth of its own (code-server runs --auth none), and anything that reaches a port
# could use them: other containers on a network with this one, say. So they listen on loopback,
# and nginx on the public ports passes a request on only when it carries the user's app secret,
# which only the user's Traefik routes add (after the portal's forwardAuth). Without a secret
# the gate refuses everything. Root-only: the user could read it with sudo, but it only has to
# keep out the others.
gate_server() { # PUBLIC_PORT LOOPBACK_PORT
    local check='return 403;'
    [ -z "$APP_SECRET" ] || check="if (\$http_x_berth_app_secret != \"$APP_SECRET\") { return 403; }"
    cat <<CONF
    server {
        listen $1;
        $check
        location / {
            proxy_pass http://127.0.0.1:$2;
            proxy_set_header Host \$http_host;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$berth_connection;
            # The secret stops here; the service and its logs never see it.
            proxy_set_header X-Berth-App-Secret "";
        }
    }
CONF
}
[ -n "$APP_SECRET" ] || log "warning: BERTH_APP_SECRET is empty: the app gate refuses every request to code-server and TensorBoard"
gate_conf=/etc/berth/app-gate.conf
(
    umask 077
    cat > "$gate_conf.new" <<CONF
# Rendered by berth-entrypoint at every start from BERTH_APP_SECRET. Do not edit.
user www-data;
worker_processes 1;
daemon off;
pid /run/berth-app-gate.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    server_tokens off;
    # code-server uploads have no size limit, and go straight through instead of to disk.
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    # Websockets (code-server's whole UI) need HTTP/1.1 and the upgrade headers, and stay open.
    proxy_http_version 1.1;
    proxy_read_timeout 1d;
    proxy_send_timeout 1d;
    map \$http_upgrade \$berth_connection { default upgrade; "" close; }
$(gate_server "$GATE_CODE" "$BERTH_CODE_SERVER_PORT")
$(gate_server "$GATE_TENSORBOARD" "$BERTH_TENSORBOARD_PORT")
}
CONF
)
chown root:root "$gate_conf.new"
chmod 0600 "$gate_conf.new"
mv -f "$gate_conf.new" "$gate_conf"

# --- enable the services that are installed ---------------------------------------------------
disabled=",${BERTH_DISABLE_SERVICES:-},"
mkdir -p /etc/supervisor/conf.d
rm -f /etc/supervisor/conf.d/*.conf
enabled=()
for conf in /etc/berth/supervisor/*.conf; do
    name="$(sed -n 's/^\[program:\(.*\)\]$/\1/p' "$conf")"
    ok=1
    for need in $(sed -n 's/^; requires: //p' "$conf"); do    # paths, or commands on PATH
        case "$need" in /*) [ -e "$need" ] ;; *) command -v "$need" >/dev/null ;; esac || ok=0
    done
    for var in $(sed -n 's/^; needs-env: //p' "$conf"); do
        [ -n "${!var:-}" ] || { ok=0; log "not starting $name: $var is empty"; }
    done
    case "$disabled" in *",$name,"*) ok=0 ;; esac
    if [ "$ok" = 1 ]; then cp "$conf" /etc/supervisor/conf.d/; enabled+=("$name"); fi
done
log "user $U ($UID_:$GID_), services: ${enabled[*]}"

# The services need only BERTH_USER/UID/GID, their ports and the Jupyter token; keep the
# passwords and the app secret out of their environment.
unset BERTH_PASSWORD BERTH_VNC_PASSWORD BERTH_APP_SECRET APP_SECRET
export BERTH_USER BERTH_UID BERTH_GID BERTH_TENSORBOARD_PORT BERTH_CODE_SERVER_PORT
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
exec /usr/bin/supervisord -n -c /etc/supervisor/supervisord.conf
