#!/usr/bin/env bash
# A libvirt host reached over qemu+tls on this machine: a second libvirtd (scripts/libvirt-instance.sh,
# its own mount namespace, domains, networks and pools) listening for TLS on 127.0.0.1 only, with a CA,
# a server certificate (SAN 127.0.0.1, localhost) and a client certificate made here with certtool.
# Test-only PKI: the CA key sits next to the certificates; never use it for a real host.
#
#   scripts/tls-host.sh start   start (idempotent); prints the host's qemu+tls URI
#   scripts/tls-host.sh uri     print the URI
#   scripts/tls-host.sh stop    stop the instance, keep its directories and the PKI
#   scripts/tls-host.sh purge   stop and remove the instance and the PKI
#
# Environment: VIRTSTACK_TLS_HOST_DIR (PKI, default /var/lib/virtstack/remote/tls), VIRTSTACK_TLS_PORT
# (16514), VIRTSTACK_TLS_INSTANCE (instance name, default tls-host).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${VIRTSTACK_TLS_HOST_DIR:-/var/lib/virtstack/remote/tls}
port=${VIRTSTACK_TLS_PORT:-16514}
instance=${VIRTSTACK_TLS_INSTANCE:-tls-host}
cmd=${1:?usage: $0 start|uri|stop|purge}
pki=$dir/server
client=$dir/client # what the URI's pkipath= names: cacert.pem, clientcert.pem, clientkey.pem
uri="qemu+tls://127.0.0.1:$port/system?pkipath=$client"

answers() { timeout 10 virsh -c "$uri" version >/dev/null 2>&1; }

cert() { # cert NAME TEMPLATE-LINES: a key and a certificate signed by the CA
  local name=$1 template=$2
  [ -f "$dir/$name.pem" ] && return 0
  printf '%s\nexpiration_days = 3650\n' "$template" >"$dir/$name.info"
  certtool --generate-privkey --outfile "$dir/$name-key.pem" 2>/dev/null
  certtool --generate-certificate --load-privkey "$dir/$name-key.pem" --load-ca-certificate "$dir/ca.pem" \
    --load-ca-privkey "$dir/ca-key.pem" --template "$dir/$name.info" --outfile "$dir/$name.pem.tmp" 2>/dev/null
  mv "$dir/$name.pem.tmp" "$dir/$name.pem"
}

make_pki() {
  command -v certtool >/dev/null || {
    echo "tls-host: certtool missing (apt-get install gnutls-bin, or run make setup)" >&2
    return 1
  }
  mkdir -p "$dir" "$pki" "$client"
  chmod 0700 "$dir"
  if [ ! -f "$dir/ca.pem" ]; then
    printf 'cn = virtstack test CA (test only)\nca\ncert_signing_key\nexpiration_days = 3650\n' >"$dir/ca.info"
    certtool --generate-privkey --outfile "$dir/ca-key.pem" 2>/dev/null
    certtool --generate-self-signed --load-privkey "$dir/ca-key.pem" --template "$dir/ca.info" \
      --outfile "$dir/ca.pem.tmp" 2>/dev/null
    mv "$dir/ca.pem.tmp" "$dir/ca.pem"
  fi
  # libvirt checks the server's name against the URI's host (127.0.0.1 here) and the key purposes.
  cert server "$(printf 'cn = 127.0.0.1\nip_address = 127.0.0.1\ndns_name = localhost\ntls_www_server\nsigning_key\nencryption_key')"
  cert client "$(printf 'cn = virtstack-test-client\ntls_www_client\nsigning_key\nencryption_key')"
  install -m 0644 "$dir/ca.pem" "$pki/cacert.pem"
  install -m 0644 "$dir/server.pem" "$pki/servercert.pem"
  install -m 0600 "$dir/server-key.pem" "$pki/serverkey.pem"
  install -m 0644 "$dir/ca.pem" "$client/cacert.pem"
  install -m 0644 "$dir/client.pem" "$client/clientcert.pem"
  install -m 0600 "$dir/client-key.pem" "$client/clientkey.pem"
}

start_instance() {
  # The instance also keeps its own UNIX socket; TCP without TLS stays off.
  VIRTSTACK_INSTANCE_CONF="listen_tls = 1
listen_tcp = 0
listen_addr = \"127.0.0.1\"
tls_port = \"$port\"
auth_tls = \"none\"
ca_file = \"$pki/cacert.pem\"
cert_file = \"$pki/servercert.pem\"
key_file = \"$pki/serverkey.pem\"" "$here/libvirt-instance.sh" start "$instance" >/dev/null
}

start() {
  if answers; then echo "$uri"; return 0; fi
  make_pki
  start_instance
  for _ in $(seq 40); do
    if answers; then echo "$uri"; return 0; fi
    sleep 0.25
  done
  # An instance started earlier without TLS answers on its UNIX socket only: restart it with TLS.
  "$here/libvirt-instance.sh" stop "$instance"
  start_instance
  for _ in $(seq 40); do
    if answers; then echo "$uri"; return 0; fi
    sleep 0.25
  done
  echo "tls-host: no TLS answer at $uri; see ${VIRTSTACK_INSTANCES:-/var/lib/virtstack/instances}/$instance/var/log/libvirt/libvirtd.log" >&2
  virsh -c "$uri" version 2>&1 | tail -2 >&2
  return 1
}

case $cmd in
  start) start ;;
  uri) echo "$uri" ;;
  stop) "$here/libvirt-instance.sh" stop "$instance" ;;
  purge) "$here/libvirt-instance.sh" purge "$instance"; rm -rf "$dir" ;;
  *) echo "usage: $0 start|uri|stop|purge" >&2; exit 2 ;;
esac
