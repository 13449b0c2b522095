#!/usr/bin/env bash
# Decide KVM or TCG by booting a tiny guest, never by assuming.
#
# /dev/kvm can exist yet be unusable for real guests (nested/paravirtual KVM: stock kernels die on MSR
# writes such as 0x10a, or spin at 100% CPU with no console output). So we boot a Debian kernel with a
# busybox initramfs whose /init prints a marker on the serial console, first under KVM with a few CPU
# modes, and take the first that reaches userspace. Otherwise TCG (domain type "qemu"), which must pass
# the same probe, or the hypervisor is unusable and we fail.
#
# Writes the decision and the evidence as JSON to $1 (default .virtstack/hypervisor.json).
# Probe artefacts (kernel, initramfs) are cached in $VIRTSTACK_CACHE/probe.
set -euo pipefail

OUT=${1:-.virtstack/hypervisor.json}
CACHE=${VIRTSTACK_CACHE:-/var/cache/virtstack}
PROBE_DIR=$CACHE/probe
URI=qemu:///system
MARKER=VIRTSTACK-PROBE-USERSPACE-OK
KVM_TIMEOUT=${VIRTSTACK_PROBE_KVM_TIMEOUT:-45}
TCG_TIMEOUT=${VIRTSTACK_PROBE_TCG_TIMEOUT:-120}

log() { printf 'kvm-probe: %s\n' "$*" >&2; }

build_probe_guest() {
  [ -s "$PROBE_DIR/vmlinuz" ] && [ -s "$PROBE_DIR/initrd.gz" ] && return 0
  local work
  work=$(mktemp -d)
  chmod 0755 "$work"
  chown _apt "$work" 2>/dev/null || true  # apt-get download runs as _apt and must write here
  # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
  trap "rm -rf '$work'" RETURN
  mkdir -p "$PROBE_DIR"
  local kpkg
  kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
  (cd "$work" && apt-get download -q "$kpkg" busybox-static >/dev/null)
  dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/bb"
  mkdir -p "$work/root/bin" "$work/root/proc" "$work/root/dev"
  cp "$work/bb/bin/busybox" "$work/root/bin/busybox"
  cat >"$work/root/init" <<INIT
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox echo "$MARKER \$(/bin/busybox cat /proc/cpuinfo | /bin/busybox grep -m1 'model name')"
/bin/busybox poweroff -f
INIT
  chmod +x "$work/root/init"
  (cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$PROBE_DIR/initrd.gz.tmp"
  cp "$work"/k/boot/vmlinuz-* "$PROBE_DIR/vmlinuz.tmp"
  mv "$PROBE_DIR/initrd.gz.tmp" "$PROBE_DIR/initrd.gz"
  mv "$PROBE_DIR/vmlinuz.tmp" "$PROBE_DIR/vmlinuz"
  chmod 0644 "$PROBE_DIR/vmlinuz" "$PROBE_DIR/initrd.gz"
}

# probe TYPE CPU_XML TIMEOUT → prints "ok SECONDS" or "fail REASON"
probe() {
  local type=$1 cpu=$2 timeout=$3 name="virtstack-probe-$$"
  local console="$PROBE_DIR/$name.log"
  rm -f "$console" "/var/log/libvirt/qemu/$name.log"  # keep only this attempt's QEMU errors
  local xml="$PROBE_DIR/$name.xml"
  cat >"$xml" <<XML
<domain type='$type'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$PROBE_DIR/vmlinuz</kernel><initrd>$PROBE_DIR/initrd.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 no_timer_check quiet</cmdline></os>
  $cpu
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices><serial type='file'><source path='$console'/><target port='0'/></serial>
    <memballoon model='none'/></devices>
</domain>
XML
  local start err
  start=$(date +%s.%N)
  if ! err=$(virsh -c "$URI" create "$xml" 2>&1 >/dev/null); then
    rm -f "$xml"
    echo "fail $(echo "$err" | tr '\n' ' ' | cut -c1-300)"
    return
  fi
  local result="fail no marker on the console within ${timeout}s"
  local deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if grep -q "$MARKER" "$console" 2>/dev/null; then
      result="ok $(echo "$(date +%s.%N) - $start" | bc | xargs printf '%.1f')"
      break
    fi
    if ! virsh -c "$URI" domstate "$name" >/dev/null 2>&1; then
      local tail
      tail=$(tail -c 300 "$console" 2>/dev/null | tr -d '\r' | tr '\n' ' ')
      grep -q "$MARKER" "$console" 2>/dev/null && continue
      result="fail guest stopped before userspace: ${tail:-no console output}"
      break
    fi
    sleep 0.5
  done
  virsh -c "$URI" destroy "$name" >/dev/null 2>&1 || true
  # QEMU's own error (e.g. "failed to set MSR") lands in libvirt's per-domain log.
  if [[ $result == fail* ]] && [ -f "/var/log/libvirt/qemu/$name.log" ]; then
    local qerr
    qerr=$(grep -v '^[0-9-]* [0-9:.]*+0000: \(starting\|shutting\)' "/var/log/libvirt/qemu/$name.log" | grep -i -m2 'error\|fail' | tr '\n' ' ' | cut -c1-300 || true)
    [ -n "$qerr" ] && result="$result; qemu: $qerr"
  fi
  rm -f "$xml" "$console"
  echo "$result"
}

json_escape() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

build_probe_guest

evidence=()
chosen_type=""
chosen_cpu=""
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  for mode in host-passthrough host-model qemu64; do
    case $mode in
      # A plain model without host passthrough avoids some MSRs; svm is not offered by nested KVM.
      qemu64) cpu="<cpu mode='custom' match='exact' check='none'><model fallback='allow'>qemu64</model><feature policy='disable' name='svm'/></cpu>" ;;
      *) cpu="<cpu mode='$mode'/>" ;;
    esac
    r=$(probe kvm "$cpu" "$KVM_TIMEOUT")
    log "kvm cpu=$mode: $r"
    evidence+=("{\"type\": \"kvm\", \"cpu_mode\": \"$mode\", \"result\": $(json_escape "$r")}")
    if [[ $r == ok* ]]; then chosen_type=kvm; chosen_cpu=$mode; break; fi
  done
else
  evidence+=("{\"type\": \"kvm\", \"result\": \"fail /dev/kvm missing or not accessible\"}")
  log "/dev/kvm missing or not accessible"
fi

if [ -z "$chosen_type" ]; then
  r=$(probe qemu "" "$TCG_TIMEOUT")
  log "tcg: $r"
  evidence+=("{\"type\": \"qemu\", \"cpu_mode\": null, \"result\": $(json_escape "$r")}")
  if [[ $r != ok* ]]; then
    log "even TCG cannot boot the probe guest: the hypervisor is unusable"
    exit 1
  fi
  chosen_type=qemu
fi

mkdir -p "$(dirname "$OUT")"
{
  printf '{\n  "domain_type": "%s",\n  "cpu_mode": %s,\n' "$chosen_type" \
    "$([ -n "$chosen_cpu" ] && echo "\"$chosen_cpu\"" || echo null)"
  printf '  "probed_at": "%s",\n  "evidence": [\n    ' "$(date -u +%FT%TZ)"
  (IFS=$'\n'; echo "${evidence[*]}") | paste -sd, | sed 's/},{/},\n    {/g'
  printf '  ]\n}\n'
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "chose domain type '$chosen_type' ($OUT)"
