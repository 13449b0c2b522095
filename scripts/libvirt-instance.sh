#!/usr/bin/env bash
# An extra, independent libvirt daemon on this machine — a second "host" for multi-host stacks, tests
# and benchmarks. Each instance runs in its own mount namespace where its own directories are
# bind-mounted over libvirt's runtime, state, config, cache and log directories, so its domains,
# networks, pools, sockets and dnsmasq are its own. It shares the kernel's network stack and firewall
# with the main daemon: give its networks distinct bridge names and subnets (virtstack derives bridge
# names from host + network names, so that holds for stacks).
#
#   scripts/libvirt-instance.sh start NAME   start (idempotent); prints the instance's URI
#   scripts/libvirt-instance.sh uri NAME     print the URI
#   scripts/libvirt-instance.sh stop NAME    stop its domains and daemons, keep its directories
#   scripts/libvirt-instance.sh purge NAME   stop and remove its directories
#
# URI: qemu+unix:///system?socket=$VIRTSTACK_INSTANCES/NAME/run/libvirt/libvirt-sock
#
# VIRTSTACK_INSTANCE_CONF (optional): extra libvirtd.conf lines for this instance, put in place at every
# start (e.g. scripts/tls-host.sh's `listen_tls = 1`); with listen_tls or listen_tcp on, libvirtd is
# started with --listen.
set -euo pipefail

BASE=${VIRTSTACK_INSTANCES:-/var/lib/virtstack/instances}
cmd=${1:?usage: $0 start|stop|purge|uri NAME}
name=${2:?usage: $0 start|stop|purge|uri NAME}
[[ $name =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || { echo "bad instance name: $name" >&2; exit 2; }
dir=$BASE/$name
uri="qemu+unix:///system?socket=$dir/run/libvirt/libvirt-sock"
DIRS=(/run/libvirt /var/lib/libvirt /etc/libvirt /var/cache/libvirt /var/log/libvirt)

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
answers() { timeout 10 virsh -c "$uri" version >/dev/null 2>&1; }

start() {
  if answers; then echo "$uri"; return 0; fi
  for d in "${DIRS[@]}"; do mkdir -p "$dir$d"; done
  mkdir -p "$dir/pid"
  # The host's directory skeleton (e.g. /var/log/libvirt/qemu for console logs) with its owners and
  # modes, but none of its files: libvirtd expects these to exist.
  find /var/lib/libvirt /var/log/libvirt /var/cache/libvirt -type d -printf '%m %u %g %p\n' |
    while read -r mode user group path; do
      mkdir -p "$dir$path" && chmod "$mode" "$dir$path" && chown "$user:$group" "$dir$path"
    done
  if [ ! -f "$dir/etc/libvirt/libvirtd.conf" ]; then
    # The host's configuration without any of its objects: this instance starts empty.
    cp -a /etc/libvirt/. "$dir/etc/libvirt/"
    find "$dir/etc/libvirt" \( -path '*/qemu/*.xml' -o -path '*/networks/*.xml' -o -path '*/storage/*.xml' \
      -o -path '*/nwfilter/*.xml' -o -path '*/secrets/*' \) -delete 2>/dev/null || true
    find "$dir/etc/libvirt" -type l -path '*autostart*' -delete 2>/dev/null || true
    cat >>"$dir/etc/libvirt/libvirtd.conf" <<CONF
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
  fi
  local conf=$dir/etc/libvirt/libvirtd.conf listen=""
  sed -i '/^# virtstack-instance-conf begin$/,/^# virtstack-instance-conf end$/d' "$conf"
  if [ -n "${VIRTSTACK_INSTANCE_CONF:-}" ]; then
    printf '# virtstack-instance-conf begin\n%s\n# virtstack-instance-conf end\n' "$VIRTSTACK_INSTANCE_CONF" >>"$conf"
  fi
  grep -Eq '^listen_(tls|tcp) *= *1' "$conf" && listen=--listen
  local mounts=""
  for d in "${DIRS[@]}"; do mounts+="mount --bind '$dir$d' '$d'; "; done
  # unshare's shell exits at once; the daemons keep the namespace alive.
  unshare -m --propagation private sh -c "
    $mounts
    virtlogd -d -p '$dir/pid/virtlogd.pid'
    libvirtd -d $listen -p '$dir/pid/libvirtd.pid' -f /etc/libvirt/libvirtd.conf
  "
  for _ in $(seq 60); do
    if answers; then echo "$uri"; return 0; fi
    sleep 0.5
  done
  echo "libvirt instance $name did not answer at $uri; see $dir/var/log/libvirt/libvirtd.log" >&2
  return 1
}

stop() {
  if answers; then
    for dom in $(virsh -c "$uri" list --name); do virsh -c "$uri" destroy "$dom" >/dev/null 2>&1 || true; done
    for net in $(virsh -c "$uri" net-list --name); do virsh -c "$uri" net-destroy "$net" >/dev/null 2>&1 || true; done
  fi
  for p in libvirtd virtlogd; do
    if alive "$dir/pid/$p.pid"; then
      pid=$(cat "$dir/pid/$p.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
}

case $cmd in
  start) start ;;
  uri) echo "$uri" ;;
  stop) stop ;;
  purge) stop; rm -rf "$dir" ;;
  *) echo "usage: $0 start|stop|purge|uri NAME" >&2; exit 2 ;;
esac
