#!/usr/bin/env bash
# `make setup`: everything virtstack needs on a fresh Debian 12 machine, idempotently, unattended.
#   1. Debian packages (libvirt daemon + QEMU, image build tools, genisoimage, libvirt-dev for the
#      Python binding)
#   2. libvirt's daemons, started without systemd (scripts/hypervisor-up.sh)
#   3. KVM or TCG, decided by booting a probe guest (scripts/kvm-probe.sh), cached per QEMU/kernel
#   4. the project's virtualenv .venv with the project installed (editable)
#   5. the Pulumi CLI and language host (scripts/build-toolchain.sh)
#   6. the Debian guest image (images/build-image.sh), rebuilt only when its recipe changes
#   7. the local file backend for Pulumi state under .virtstack/
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
cd "$VIRTSTACK_ROOT"

log() { printf '\n== setup: %s\n' "$*" >&2; }
t_start=$(date +%s)

APT_PACKAGES=(
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base iptables
  genisoimage xorriso mmdebstrap syslinux syslinux-common mtools dosfstools e2fsprogs fdisk
  cpio busybox-static bc libvirt-dev pkg-config python3-venv curl ca-certificates
  openssh-server openssh-client gnutls-bin
  ovmf swtpm swtpm-tools
)

log "Debian packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: run as root to install: ${missing[*]}" >&2; exit 1; }
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "all ${#APT_PACKAGES[@]} packages present"
fi

log "libvirt daemons"
scripts/hypervisor-up.sh

log "KVM or TCG"
# The decision depends on the kernel, QEMU and /dev/kvm; re-probe only when one of them changed.
probe_key=$( (uname -r; qemu-system-x86_64 --version | head -1; ls -l /dev/kvm 2>&1 | cut -c1-10; sha256sum scripts/kvm-probe.sh) | sha256sum | cut -c1-16)
if [ "${VIRTSTACK_REPROBE:-0}" != 1 ] && [ -f .virtstack/hypervisor.json ] &&
  [ "$(cat .virtstack/hypervisor.key 2>/dev/null)" = "$probe_key" ]; then
  echo "cached decision: $(grep -o '"domain_type": "[a-z]*"' .virtstack/hypervisor.json)"
else
  scripts/kvm-probe.sh .virtstack/hypervisor.json
  echo "$probe_key" >.virtstack/hypervisor.key
fi

# The Pulumi Python SDK at the CLI's version (one pin: tools/pulumi/go.mod; pyproject.toml names the
# same, checked by tests/unit/test_settings.py).  PyPI does not serve every release the Go module proxy
# does (3.274.1: the proxy only), so when pip cannot get it, it is installed from the python/ directory
# of the sdk/v3 Go module: the very source tree the CLI and the dynamic-provider launcher come from.
install_python_sdk() {
  local want=$VIRTSTACK_PULUMI_VERSION sdk tmp
  if .venv/bin/pip install -q "pulumi==$want" 2>/dev/null; then
    return
  fi
  command -v go >/dev/null || { echo "Go is needed for the Pulumi Python SDK $want (not on PyPI)" >&2; exit 1; }
  sdk=$(cd tools/pulumi && GOFLAGS=-mod=mod go mod download -json github.com/pulumi/pulumi/sdk/v3 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  tmp=$(mktemp -d)
  cp -r "$sdk/python" "$tmp/" && chmod -R u+w "$tmp"  # the module cache is read-only; the build writes
  .venv/bin/pip install -q "$tmp/python"
  rm -rf "$tmp"
}

log "Python virtualenv"
venv_key=$( (cat pyproject.toml tools/pulumi/go.mod; python3 --version) | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.virtstack-key 2>/dev/null)" != "$venv_key" ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  install_python_sdk
  .venv/bin/pip install -q -e '.[dev]'
  echo "$venv_key" >.venv/.virtstack-key
else
  echo ".venv up to date"
fi

log "Pulumi toolchain"
scripts/build-toolchain.sh

log "guest image"
images/ensure-image.sh

log "Pulumi state backend"
[[ $PULUMI_BACKEND_URL != postgres* ]] || scripts/postgres-up.sh ensure "$PULUMI_BACKEND_URL"  # a local PostgreSQL for it
mkdir -p "$PULUMI_HOME"
# The state holds every stack's (encrypted) secrets: owner only.
mkdir -p -m 0700 .virtstack/state && chmod 0700 .virtstack/state
pulumi login "$PULUMI_BACKEND_URL" >/dev/null
echo "backend $PULUMI_BACKEND_URL ($(pulumi version))"

log "done in $(($(date +%s) - t_start))s"
