#!/usr/bin/env bash
# Decide KVM or TCG by booting a tiny guest, never by assuming — and decide in seconds.
#
# /dev/kvm can exist yet be unusable for real guests (nested/paravirtual KVM: stock kernels die on MSR
# writes such as 0x10a, or spin at 100% CPU with no console output). So we boot a Debian kernel with a
# busybox initramfs whose /init prints a marker on the serial console, under KVM with a few CPU modes
# and under TCG, all at once, and take the first KVM mode that reaches userspace, else TCG (domain
# type "qemu"), or fail when even TCG cannot boot it.
#
# Nothing waits out a long timeout: a failing KVM says so by itself —
#   - QEMU exits (create fails, or the domain disappears) with its reason in libvirt's per-domain log
#     ("failed to set MSR 0x10a");
#   - or the kernel never starts: with earlyprintk on the serial port a kernel prints "Linux version"
#     within milliseconds of being entered, so a KVM guest whose console holds no kernel line after
#     $VIRTSTACK_PROBE_KVM_STALL seconds (default 6) while it burns CPU is stuck in the firmware.
# TCG, slow but sure, keeps its long timeout; it only matters when no KVM mode passes.
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
KVM_STALL=${VIRTSTACK_PROBE_KVM_STALL:-6}
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

# probe TYPE TAG CPU_XML TIMEOUT STALL → prints "ok SECONDS" or "fail REASON". STALL > 0: fail when the
# console holds no kernel line after STALL seconds (a KVM guest stuck before the kernel).
probe() {
  local type=$1 tag=$2 cpu=$3 timeout=$4 stall=$5 name="virtstack-probe-$$-$2"
  local console="$PROBE_DIR/$name.log" qlog="/var/log/libvirt/qemu/$name.log"
  rm -f "$console" "$qlog"  # keep only this attempt's QEMU errors
  local xml="$PROBE_DIR/$name.xml"
  cat >"$xml" <<XML
<domain type='$type'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$PROBE_DIR/vmlinuz</kernel><initrd>$PROBE_DIR/initrd.gz</initrd>
    <cmdline>console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 no_timer_check</cmdline></os>
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
  local now deadline=$(($(date +%s) + timeout)) stall_at=$(($(date +%s) + stall))
  while :; do
    now=$(date +%s)
    [ "$now" -lt "$deadline" ] || break
    if grep -q "$MARKER" "$console" 2>/dev/null; then
      result="ok $(echo "$(date +%s.%N) - $start" | bc | xargs printf '%.1f')"
      break
    fi
    if ! virsh -c "$URI" domstate "$name" >/dev/null 2>&1; then
      grep -q "$MARKER" "$console" 2>/dev/null && continue
      local tail
      tail=$(tail -c 300 "$console" 2>/dev/null | tr -d '\r' | tr '\n' ' ')
      result="fail guest stopped before userspace: ${tail:-no console output}"
      break
    fi
    if [ "$stall" -gt 0 ] && [ "$now" -ge "$stall_at" ] && ! grep -q 'Linux version' "$console" 2>/dev/null; then
      local cpu_ns
      cpu_ns=$(virsh -c "$URI" domstats "$name" --cpu-total 2>/dev/null | sed -n 's/.*cpu.time=//p')
      result="fail the kernel never started: no kernel line on the console after ${stall}s"
      result="$result ($(printf '%.1f' "$(echo "${cpu_ns:-0} / 1000000000" | bc -l)")s of CPU;"
      result="$result console: $(tr -d '\r' <"$console" 2>/dev/null | tr '\n' ' ' | cut -c1-100))"
      break
    fi
    sleep 0.2
  done
  virsh -c "$URI" destroy "$name" >/dev/null 2>&1 || true
  # QEMU's own error (e.g. "failed to set MSR") lands in libvirt's per-domain log.
  if [[ $result == fail* ]] && [ -f "$qlog" ]; then
    local qerr
    qerr=$(grep -v '^[0-9-]* [0-9:.]*+0000: \(starting\|shutting\)' "$qlog" | grep -i -m2 'error\|fail' | tr '\n' ' ' | cut -c1-300 || true)
    [ -n "$qerr" ] && result="$result; qemu: $qerr"
  fi
  rm -f "$xml" "$console"
  echo "$result"
}

json_escape() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

build_probe_guest

# Every candidate boots at once (each result in its own file); the decision takes the first KVM mode
# in order of preference that passed, else TCG.
RESULTS=$(mktemp -d)
trap 'rm -rf "$RESULTS"' EXIT
t_probe=$(date +%s.%N)
KVM_MODES=()
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  KVM_MODES=(host-passthrough host-model qemu64)
  for mode in "${KVM_MODES[@]}"; do
    case $mode in
      # A plain model without host passthrough avoids some MSRs; svm is not offered by nested KVM.
      qemu64) cpu="<cpu mode='custom' match='exact' check='none'><model fallback='allow'>qemu64</model><feature policy='disable' name='svm'/></cpu>" ;;
      *) cpu="<cpu mode='$mode'/>" ;;
    esac
    probe kvm "$mode" "$cpu" "$KVM_TIMEOUT" "$KVM_STALL" >"$RESULTS/kvm-$mode" &
  done
fi
probe qemu tcg "" "$TCG_TIMEOUT" 0 >"$RESULTS/tcg" &
wait

evidence=()
chosen_type=""
chosen_cpu=""
if [ ${#KVM_MODES[@]} -eq 0 ]; then
  evidence+=("{\"type\": \"kvm\", \"result\": \"fail /dev/kvm missing or not accessible\"}")
  log "/dev/kvm missing or not accessible"
fi
for mode in "${KVM_MODES[@]}"; do
  r=$(cat "$RESULTS/kvm-$mode")
  log "kvm cpu=$mode: $r"
  evidence+=("{\"type\": \"kvm\", \"cpu_mode\": \"$mode\", \"result\": $(json_escape "$r")}")
  if [ -z "$chosen_type" ] && [[ $r == ok* ]]; then chosen_type=kvm; chosen_cpu=$mode; fi
done
r=$(cat "$RESULTS/tcg")
log "tcg: $r"
evidence+=("{\"type\": \"qemu\", \"cpu_mode\": null, \"result\": $(json_escape "$r")}")
if [ -z "$chosen_type" ]; then
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
  printf '  "probed_at": "%s",\n  "probe_seconds": %s,\n  "evidence": [\n    ' "$(date -u +%FT%TZ)" \
    "$(echo "$(date +%s.%N) - $t_probe" | bc | xargs printf '%.1f')"
  (IFS=$'\n'; echo "${evidence[*]}") | paste -sd, | sed 's/},{/},\n    {/g'
  printf '  ]\n}\n'
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "chose domain type '$chosen_type' in $(grep -o '"probe_seconds": [0-9.]*' "$OUT" | cut -d' ' -f2)s ($OUT)"
