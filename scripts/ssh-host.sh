#!/usr/bin/env bash
# A libvirt host reached over qemu+ssh on this machine: a private sshd on 127.0.0.1 (its own config,
# host key, PID file and authorized_keys — the system's sshd and ~/.ssh/authorized_keys are never
# touched), key-only, with a client key and a known_hosts file made here. The sshd runs inside the mount
# namespace of its own libvirt instance (scripts/libvirt-instance.sh, default name ssh-host), so the far
# side's `qemu:///system` is that daemon, not the main one: tests that restart the main daemon do not
# touch this host. It shares the kernel's network stack: use distinct bridges and subnets.
#
# libvirt's qemu+ssh transport runs the OpenSSH client, which ignores the URI's known_hosts= (only the
# in-process libssh/libssh2 transports read it) and checks host keys against the user's own
# ~/.ssh/known_hosts (OpenSSH takes the home directory from the password database, not $HOME). So
# `start` also puts this host's key there, for [127.0.0.1]:PORT only, and `purge` removes it.
#
#   scripts/ssh-host.sh start   start (idempotent); prints the host's qemu+ssh URI
#   scripts/ssh-host.sh uri     print the URI
#   scripts/ssh-host.sh stop    stop the sshd (by the PID in its PID file) and its instance, keep keys
#   scripts/ssh-host.sh purge   stop, remove the directory (keys included) and the instance
#
# Environment: VIRTSTACK_SSH_HOST_DIR (default /var/lib/virtstack/remote/ssh), VIRTSTACK_SSH_PORT (2222),
# VIRTSTACK_SSH_INSTANCE (the libvirt instance behind it, default ssh-host).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${VIRTSTACK_SSH_HOST_DIR:-/var/lib/virtstack/remote/ssh}
instance=${VIRTSTACK_SSH_INSTANCE:-ssh-host}
instance_pid=${VIRTSTACK_INSTANCES:-/var/lib/virtstack/instances}/$instance/pid/libvirtd.pid
port=${VIRTSTACK_SSH_PORT:-2222}
cmd=${1:?usage: $0 start|uri|stop|purge}
user=$(id -un)
key=$dir/client_ed25519
known=$dir/known_hosts
uri="qemu+ssh://$user@127.0.0.1:$port/system?keyfile=$key"
user_known=$(getent passwd "$user" | cut -d: -f6)/.ssh/known_hosts

alive() { [ -s "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; }

# The sshd serves the instance's namespace (a restarted instance gets a new one).
in_instance_ns() {
  [ "$(readlink "/proc/$(cat "$dir/sshd.pid")/ns/mnt" 2>/dev/null)" = \
    "$(readlink "/proc/$(cat "$instance_pid" 2>/dev/null)/ns/mnt" 2>/dev/null)" ]
}

# A login with exactly the options libvirt's ssh transport will use (key only, strict host key).
answers() {
  timeout 10 ssh -p "$port" -i "$key" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$known" -o ConnectTimeout=5 "$user@127.0.0.1" true </dev/null >/dev/null 2>&1
}

start() {
  command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || {
    echo "ssh-host: /usr/sbin/sshd missing (apt-get install openssh-server, or run make setup)" >&2
    return 1
  }
  mkdir -p "$dir"
  chmod 0700 "$dir"
  [ -f "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C virtstack-ssh-host -f "$dir/host_ed25519"
  [ -f "$key" ] || ssh-keygen -q -t ed25519 -N "" -C virtstack-test-client -f "$key"
  cp "$key.pub" "$dir/authorized_keys"
  # The host key is known from the file we made, not learnt over the network (no trust on first use).
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$known"
  if ! grep -qxF -f "$known" "$user_known" 2>/dev/null; then
    mkdir -p "$(dirname "$user_known")" && chmod 0700 "$(dirname "$user_known")"
    [ -f "$user_known" ] && ssh-keygen -q -R "[127.0.0.1]:$port" -f "$user_known" >/dev/null 2>&1
    cat "$known" >>"$user_known"
  fi
  cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $user
UsePAM no
X11Forwarding no
AllowTcpForwarding no
PermitTunnel no
# libvirt runs its helper (virt-ssh-helper or nc) on this side through the login shell.
Subsystem sftp internal-sftp
LogLevel VERBOSE
CONF
  "$here/libvirt-instance.sh" start "$instance" >/dev/null
  if alive && in_instance_ns && answers; then echo "$uri"; return 0; fi
  stop
  mkdir -p /run/sshd # privilege separation directory
  /usr/sbin/sshd -t -f "$dir/sshd_config"
  nsenter --mount="/proc/$(cat "$instance_pid")/ns/mnt" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
  for _ in $(seq 50); do
    if answers; then echo "$uri"; return 0; fi
    sleep 0.2
  done
  echo "ssh-host: sshd on 127.0.0.1:$port did not accept the test key; see $dir/sshd.log" >&2
  return 1
}

stop() {
  if alive; then
    pid=$(cat "$dir/sshd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}

case $cmd in
  start) start ;;
  uri) echo "$uri" ;;
  stop) stop; "$here/libvirt-instance.sh" stop "$instance" ;;
  purge)
    stop
    "$here/libvirt-instance.sh" purge "$instance"
    [ -f "$user_known" ] && ssh-keygen -q -R "[127.0.0.1]:$port" -f "$user_known" >/dev/null 2>&1
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|uri|stop|purge" >&2; exit 2 ;;
esac
