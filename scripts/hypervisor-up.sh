#!/usr/bin/env bash
# Start libvirt's daemons without systemd (PID 1 here is not an init), idempotently.
#
# - A daemon that already answers is left alone: we never start a second libvirtd.
# - PID files and logs live under known directories so a later run (or a person) can find them:
#     $VIRTSTACK_RUN_DIR (default /run/virtstack): virtlogd.pid, libvirtd.pid, libvirtd.conf
#     $VIRTSTACK_LOG_DIR (default /var/log/virtstack): virtlogd.log, libvirtd.log
# - /dev/kvm gets the group/mode udev would give it; left root:root 0600, libvirt re-probes QEMU
#   on every define (40-70 s each, see shared/notes/hypervisor.md).
set -euo pipefail

RUN_DIR=${VIRTSTACK_RUN_DIR:-/run/virtstack}
LOG_DIR=${VIRTSTACK_LOG_DIR:-/var/log/virtstack}
URI=qemu:///system
WAIT_SECONDS=${VIRTSTACK_DAEMON_WAIT:-60}

log() { printf 'hypervisor-up: %s\n' "$*" >&2; }

answers() { timeout 10 virsh -c "$URI" version >/dev/null 2>&1; }

alive() {  # alive PIDFILE: the process named in the file is running
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

mkdir -p "$RUN_DIR" "$LOG_DIR"

# libvirt runs swtpm (`tpm: true`) as tss; a swtpm_setup run as root leaves files of swtpm's local CA
# that tss cannot lock or read ("Need read/write rights on /var/lib/swtpm-localca/.lock.swtpm-localca").
if [ -d /var/lib/swtpm-localca ] && id tss >/dev/null 2>&1; then
  chown -R tss /var/lib/swtpm-localca
fi
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null && chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
fi

# Only our PID file or the daemon's default one count: extra daemon instances (libvirt-instance.sh)
# run under the same process names in their own namespaces and must not be taken for the main one.
if ! alive "$RUN_DIR/virtlogd.pid" && ! alive /run/virtlogd.pid; then
  cat >"$RUN_DIR/virtlogd.conf" <<CONF
log_outputs = "3:file:$LOG_DIR/virtlogd.log"
CONF
  virtlogd -d -f "$RUN_DIR/virtlogd.conf" -p "$RUN_DIR/virtlogd.pid"
  log "started virtlogd (pid $(cat "$RUN_DIR/virtlogd.pid" 2>/dev/null || echo '?'))"
fi

if answers; then
  log "libvirtd already answers on $URI"
  exit 0
fi

if alive "$RUN_DIR/libvirtd.pid" || alive /run/libvirtd.pid; then
  log "libvirtd is running but not answering yet; waiting"
else
  # Group access for non-root users in group libvirt; there is no polkit without D-Bus.
  cat >"$RUN_DIR/libvirtd.conf" <<CONF
unix_sock_group = "libvirt"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
log_outputs = "3:file:$LOG_DIR/libvirtd.log"
CONF
  getent group libvirt >/dev/null || sed -i '/^unix_sock_group/d' "$RUN_DIR/libvirtd.conf"
  libvirtd -d -f "$RUN_DIR/libvirtd.conf" -p "$RUN_DIR/libvirtd.pid"
  log "started libvirtd (logs in $LOG_DIR)"
fi

for _ in $(seq "$WAIT_SECONDS"); do
  if answers; then
    log "libvirtd answers on $URI"
    exit 0
  fi
  sleep 1
done
log "libvirtd did not answer on $URI within ${WAIT_SECONDS}s; see $LOG_DIR/libvirtd.log"
exit 1
