#!/usr/bin/env bash
# `make setup`: everything virtstack needs on a fresh Debian 12 machine, idempotently, unattended.
#
# The steps (the list at the bottom) run IN PARALLEL as soon as the steps they name after `--after`
# have finished: the Pulumi toolchain build (Go, minutes when cold) needs nothing from apt, so it starts
# at once; the KVM probe, the virtualenv and the guest image start together once the packages are in.
#   apt        Debian packages (libvirt daemon + QEMU, image build tools, genisoimage, libvirt-dev)
#   toolchain  the Pulumi CLI and language host (scripts/build-toolchain.sh)
#   daemons    libvirt's daemons, started without systemd (scripts/hypervisor-up.sh)
#   probe      KVM or TCG, decided by booting a probe guest (scripts/kvm-probe.sh), cached per QEMU/kernel
#   venv       the project's virtualenv .venv with the project installed (editable)
#   image      the Debian guest image (images/ensure-image.sh), rebuilt only when its recipe changes
#   state      the local file backend for Pulumi state under .virtstack/
#   libvirt-plugin  the engine's resource plugin for `backend: pulumi-libvirt` hosts (a Go build)
# Each step's output goes to .virtstack/setup/STEP.log (printed when a step fails); timings at the end.
#
# `scripts/setup.sh --for up` (what `make up` runs) leaves out the steps no stack file in stacks/ needs:
# the libvirt plugin's Go build (minutes when cold) runs only when one of them has a `backend:
# pulumi-libvirt` host (`virtstack plan`/`up` stop with "make setup" if a stack gains one later).
# `make setup` and `make test` run every step.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
cd "$VIRTSTACK_ROOT"

log() { printf '== setup: %s\n' "$*" >&2; }
FOR=all
case "${1:-}" in
  --for) FOR=${2:?--for what: up}; [ "$FOR" = up ] || { log "--for: only 'up' is known, not '$FOR'"; exit 2; } ;;
  "") ;;
  *) log "usage: scripts/setup.sh [--for up]"; exit 2 ;;
esac
# since T0: seconds (one decimal) since T0=$EPOCHREALTIME (bash's own clock: bc may not be installed yet)
since() { local us=$((${EPOCHREALTIME/./} - ${1/./})); printf '%d.%d' $((us / 1000000)) $((us % 1000000 / 100000)); }
t_start=$EPOCHREALTIME
LOGS=.virtstack/setup
mkdir -p "$LOGS"
rm -f "$LOGS"/*.rc "$LOGS"/*.seconds

APT_PACKAGES=(
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base iptables
  genisoimage xorriso mmdebstrap syslinux syslinux-common mtools dosfstools e2fsprogs fdisk
  cpio busybox-static bc libvirt-dev pkg-config python3-venv curl ca-certificates
  openssh-server openssh-client gnutls-bin xsltproc
  ovmf swtpm swtpm-tools
)

step_apt() {
  local missing
  # One dpkg-query for all: the installed ones, then every wanted one not among them.
  mapfile -t missing < <(comm -13 \
    <(dpkg-query -W -f='${Package} ${Status}\n' "${APT_PACKAGES[@]}" 2>/dev/null | awk '/install ok installed/{print $1}' | sort -u) \
    <(printf '%s\n' "${APT_PACKAGES[@]}" | sort -u))
  if [ ${#missing[@]} -eq 0 ]; then
    echo "all ${#APT_PACKAGES[@]} packages present"
    return
  fi
  [ "$(id -u)" = 0 ] || { echo "setup: run as root to install: ${missing[*]}" >&2; return 1; }
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

step_probe() {
  # The decision depends on the kernel, QEMU and /dev/kvm; re-probe only when one of them changed.
  local key
  key=$( (uname -r; qemu-system-x86_64 --version | head -1; ls -l /dev/kvm 2>&1 | cut -c1-10; sha256sum scripts/kvm-probe.sh) | sha256sum | cut -c1-16)
  if [ "${VIRTSTACK_REPROBE:-0}" != 1 ] && [ -f .virtstack/hypervisor.json ] &&
    [ "$(cat .virtstack/hypervisor.key 2>/dev/null)" = "$key" ]; then
    echo "cached decision: $(grep -o '"domain_type": "[a-z]*"' .virtstack/hypervisor.json)"
    return
  fi
  scripts/kvm-probe.sh .virtstack/hypervisor.json
  echo "$key" >.virtstack/hypervisor.key
}

# The Pulumi Python SDK at the CLI's version (one pin: tools/pulumi/go.mod; pyproject.toml names the
# same, checked by tests/unit/test_settings.py).  PyPI does not serve every release the Go module proxy
# does (3.274.1: the proxy only), so when pip cannot get it, it is installed from the python/ directory
# of the sdk/v3 Go module: the very source tree the CLI and the dynamic-provider launcher come from (the
# toolchain step downloads the same module into the same Go module cache: fetched once).
install_python_sdk() {
  local want=$VIRTSTACK_PULUMI_VERSION sdk tmp
  if .venv/bin/pip install -q "pulumi==$want" 2>/dev/null; then
    return
  fi
  command -v go >/dev/null || { echo "Go is needed for the Pulumi Python SDK $want (not on PyPI)" >&2; return 1; }
  sdk=$(cd tools/pulumi && GOFLAGS=-mod=mod go mod download -json github.com/pulumi/pulumi/sdk/v3 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  tmp=$(mktemp -d)
  cp -r "$sdk/python" "$tmp/" && chmod -R u+w "$tmp"  # the module cache is read-only; the build writes
  .venv/bin/pip install -q "$tmp/python"
  rm -rf "$tmp"
}

step_venv() {
  local key
  key=$( (cat pyproject.toml tools/pulumi/go.mod; python3 --version) | sha256sum | cut -c1-16)
  if [ -x .venv/bin/python ] && [ "$(cat .venv/.virtstack-key 2>/dev/null)" = "$key" ]; then
    echo ".venv up to date"
    return
  fi
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  install_python_sdk
  .venv/bin/pip install -q -e '.[dev]'
  echo "$key" >.venv/.virtstack-key
}

step_state() {
  [[ $PULUMI_BACKEND_URL != postgres* ]] || scripts/postgres-up.sh ensure "$PULUMI_BACKEND_URL"  # a local PostgreSQL for it
  mkdir -p "$PULUMI_HOME"
  # The state holds every stack's (encrypted) secrets: owner only.
  mkdir -p -m 0700 .virtstack/state && chmod 0700 .virtstack/state
  pulumi login "$PULUMI_BACKEND_URL" >/dev/null
  echo "backend $PULUMI_BACKEND_URL ($(pulumi version))"
}

# needed_for_up TEST...: true for a whole setup, else (`--for up`) what TEST says.
needed_for_up() { [ "$FOR" != up ] || "$@"; }
stacks_use_pulumi_libvirt() { grep -Eqs '^[[:space:]]*backend:[[:space:]]*["'"'"']?pulumi-libvirt' stacks/*.yaml stacks/*.yml; }

# step NAME [--after STEP...] -- COMMAND...: run COMMAND in the background once every STEP succeeded.
STEPS=()
step() {
  local name=$1 deps=()
  shift
  if [ "${1:-}" = --after ]; then
    shift
    while [ "$1" != -- ]; do deps+=("$1"); shift; done
  fi
  shift  # --
  STEPS+=("$name")
  (
    for d in "${deps[@]}"; do
      while [ ! -f "$LOGS/$d.rc" ]; do sleep 0.2; done
      if [ "$(cat "$LOGS/$d.rc")" != 0 ]; then
        echo "not run: step '$d' failed" >"$LOGS/$name.log"
        echo skipped >"$LOGS/$name.rc"
        exit 0
      fi
    done
    local t0=$EPOCHREALTIME rc
    log "$name started"
    # Not under `||`: that would switch off `set -e` inside the step's functions.
    set +e
    (set -e; "$@") >"$LOGS/$name.log" 2>&1 </dev/null
    rc=$?
    set -e
    since "$t0" >"$LOGS/$name.seconds"
    echo "$rc" >"$LOGS/$name.rc"
    if [ "$rc" = 0 ]; then
      log "$name done in $(cat "$LOGS/$name.seconds")s: $(tail -n1 "$LOGS/$name.log")"
    else
      log "$name FAILED (exit $rc) after $(cat "$LOGS/$name.seconds")s; the end of $LOGS/$name.log:"
      tail -n 30 "$LOGS/$name.log" | sed 's/^/    /' >&2
    fi
  ) &
}

# ---------------------------------------------------------------------------------- the steps
# One line each; a step starts when the steps after --after have succeeded.
step apt -- step_apt
step toolchain -- scripts/build-toolchain.sh
step daemons --after apt -- scripts/hypervisor-up.sh
step probe --after daemons -- step_probe
step venv --after apt -- step_venv
step image --after apt -- images/ensure-image.sh
step state --after apt toolchain -- step_state
if needed_for_up stacks_use_pulumi_libvirt; then
  step libvirt-plugin --after apt toolchain -- scripts/build-libvirt-plugin.sh  # pulumi-libvirt 0.5.4
else
  log "libvirt-plugin left out: no stack in stacks/ has a pulumi-libvirt host (make setup builds it)"
fi
# --------------------------------------------------------------------------------------------

wait
failed=()
summary=()
for s in "${STEPS[@]}"; do
  [ "$(cat "$LOGS/$s.rc" 2>/dev/null)" = 0 ] || failed+=("$s")
  summary+=("$s $(cat "$LOGS/$s.seconds" 2>/dev/null || echo -)s")
done
total=$(since "$t_start")
echo "$total" >"$LOGS/total.seconds"
if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]} (logs in $LOGS/); after ${total}s"
  exit 1
fi
log "done in ${total}s ($(IFS=,; echo "${summary[*]}" | sed 's/,/, /g'))"
