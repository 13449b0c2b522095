"""VM features on the real engine and daemon (issue 17): UEFI and UEFI + TPM guests that boot and go
without leftovers; a memory change that waits for the guest's ACPI shutdown; a cloud-init change
(`reseed`) that reaches the guest with its data disk intact; snapshot → write → revert.

Guests are checked through libvirt only (domain XML, guest agent, serial console log). Each test has
its own stack, names and subnet, and removes what it created even when it fails.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.integration.realenv import (
    URI,
    PulumiProject,
    agent_command,
    guest_exec,
    libvirt_inventory,
    local_spec,
    wait_for,
)

BOOT_TIMEOUT = 600  # TCG on two cores shared by every helper's tests: boots took up to 400 s
MARKER_OFFSET_BLOCKS = 2048  # 1 MiB into the raw data disk: no filesystem needed


def _vm(prefix: str, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "debian-12",
        "vcpus": 1,
        "memory": "384MiB",
        "disk": "3GiB",
        "nics": [{"network": prefix}],
    }
    spec.update(over)
    return spec


@contextmanager
def _stack(tmp_path: Path, prefix: str, spec: dict[str, Any]) -> Iterator[PulumiProject]:
    spec_file = tmp_path / f"{prefix}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    project = PulumiProject(stack=prefix, backend=tmp_path / "state", spec_file=spec_file)
    project.init()
    try:
        yield project
    finally:
        project.virtstack("destroy", "-s", prefix, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()


def _write(project: PulumiProject, spec: dict[str, Any]) -> None:
    project.spec_file.write_text(yaml.safe_dump(spec))


def _up(project: PulumiProject) -> str:
    proc = project.virtstack("up", "-s", project.stack, "--yes")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


def _plan(project: PulumiProject) -> str:
    proc = project.virtstack("plan", "-s", project.stack)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _agent(name: str) -> None:
    wait_for(lambda: agent_command(name, "guest-ping") is not None, BOOT_TIMEOUT, 2, f"{name}'s guest agent")


def _xml(name: str) -> str:
    import libvirt

    conn = libvirt.open(URI)
    try:
        return str(conn.lookupByName(name).XMLDesc(0))
    finally:
        conn.close()


class _LogWatcher:
    """Keeps everything a serial console log held while it runs: a restart truncates the file
    (virtlogd, append off), so the shutdown messages of the previous boot are caught here."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen, self._stop = path, "", threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = ""
        while not self._stop.is_set():
            try:
                text = self.path.read_text(errors="replace")
            except OSError:
                text = ""
            if not text.startswith(last[:200]) or len(text) < len(last):
                self.seen += last  # truncated: keep the previous boot's log
            last = text
            time.sleep(0.1)
        self.seen += last

    def __enter__(self) -> _LogWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_uefi_and_uefi_tpm_vms_boot_and_leave_nothing(tmp_path: Path, real_parts: None) -> None:
    prefix = f"i17fw-{secrets.token_hex(3)}"
    spec = local_spec(prefix, 217)
    efi, tpm = f"{prefix}-efi", f"{prefix}-tpm"
    spec["vms"] = {
        efi: _vm(prefix, firmware="uefi"),
        tpm: _vm(prefix, firmware="uefi-secure", tpm=True),
    }
    state: dict[str, str] = {}
    with _stack(tmp_path, prefix, spec) as project:
        _up(project)
        for name in (efi, tpm):
            _agent(name)
        # Firmware as asked: OVMF with a per-VM NVRAM file; the TPM emulator with its own state.
        efi_xml, tpm_xml = _xml(efi), _xml(tpm)
        assert "OVMF" in efi_xml and f"{efi}_VARS.fd" in efi_xml and "<tpm" not in efi_xml
        assert "secure='yes'" in tpm_xml and "<tpm model='tpm-crb'>" in tpm_xml
        import libvirt

        conn = libvirt.open(URI)
        try:
            uuid = conn.lookupByName(tpm).UUIDString()
        finally:
            conn.close()
        state = {
            "efi nvram": f"/var/lib/libvirt/qemu/nvram/{efi}_VARS.fd",
            "tpm nvram": f"/var/lib/libvirt/qemu/nvram/{tpm}_VARS.fd",
            "tpm state": f"/var/lib/libvirt/swtpm/{uuid}",
        }
        assert all(Path(p).exists() for p in state.values()), state
        # The guest itself saw Secure Boot on and a TPM.
        assert "Secure boot enabled" in guest_exec(tpm, ["/bin/sh", "-c", "dmesg | grep -i 'secure boot'"])
        assert guest_exec(tpm, ["/bin/ls", "/sys/class/tpm"]).split() == ["tpm0"]
        destroy = project.virtstack("destroy", "-s", prefix, "--yes", "--allow-data-loss", "--no-trash")
        assert destroy.returncode == 0, destroy.stdout + destroy.stderr
    assert [p for p in state.values() if Path(p).exists()] == []
    assert libvirt_inventory(prefix)["domains"] == []


def test_changes_wait_for_acpi_reseed_keeps_disks_and_snapshots_revert(
    tmp_path: Path, real_parts: None
) -> None:
    prefix = f"i17ch-{secrets.token_hex(3)}"
    name = prefix
    spec = local_spec(prefix, 218)
    spec["vms"] = {
        name: _vm(
            prefix,
            data_disks=[{"name": "data", "size": "64MiB"}],
            cloud_init={"write_files": [{"path": "/etc/i17-first", "content": "first\n"}]},
        )
    }
    marker = f"i17-marker-{secrets.token_hex(6)}"
    with _stack(tmp_path, prefix, spec) as project:
        _up(project)
        _agent(name)
        guest_exec(
            name,
            [
                "/bin/sh",
                "-c",
                f"printf '{marker}' | dd of=/dev/vdb bs=512 seek={MARKER_OFFSET_BLOCKS} conv=fsync",
            ],
        )

        # 1. A memory change restarts the VM after its ACPI shutdown (the plan says so first).
        spec["vms"][name]["memory"] = "448MiB"
        _write(project, spec)
        assert "waits up to 60 s for an ACPI shutdown" in _plan(project)
        with _LogWatcher(Path(f"/var/log/libvirt/qemu/{name}-serial0.log")) as log:
            out = _up(project)
            _agent(name)
        assert f"vm {name} shut down by ACPI" in out, out[-3000:]
        assert "reboot: Power down" in log.seen, log.seen[-3000:]

        # 2. A cloud-init change with the default `reseed`: new seed, reboot, disks kept.
        spec["vms"][name]["cloud_init"] = {
            "write_files": [{"path": "/etc/i17-second", "content": f"{marker}\n"}]
        }
        _write(project, spec)
        plan = _plan(project)
        assert "cloud-init changed: reseed" in plan, plan
        _up(project)
        _agent(name)
        assert guest_exec(name, ["/bin/cat", "/etc/i17-second"]).strip() == marker
        read = guest_exec(
            name,
            ["/bin/sh", "-c", f"dd if=/dev/vdb bs=512 skip={MARKER_OFFSET_BLOCKS} count=1 2>/dev/null"],
        )
        assert read.startswith(marker)

        # 3. The VM's real address (its DHCP lease) as inventory reports it: the domain resource records
        # it in its outputs; inventory asks libvirt first.
        listed_inventory = project.virtstack("inventory", "-s", prefix, "--format", "json")
        assert listed_inventory.returncode == 0, listed_inventory.stdout + listed_inventory.stderr
        entry = json.loads(listed_inventory.stdout)["vms"][name]
        ips = entry["addresses"]
        assert len(ips) == 1 and ips[0].startswith("10.152.218."), entry
        assert entry["address_source"] == "dhcp", entry

        # 4. snapshot → write a file → revert → the file is gone (disks and memory restored).
        snap = project.virtstack("snapshot", "create", "-s", prefix, "before")
        assert snap.returncode == 0 and snap.stdout == f"Snapshot before taken of 1 VM(s): {name}.\n", snap
        listed = project.virtstack("snapshot", "list", "-s", prefix)
        assert listed.stdout.splitlines()[1].split()[:2] == [name, "before"], listed.stdout
        guest_exec(name, ["/bin/sh", "-c", "echo after > /root/after-snapshot && sync"])
        assert guest_exec(name, ["/bin/cat", "/root/after-snapshot"]).strip() == "after"
        back = project.virtstack("snapshot", "revert", "-s", prefix, "before")
        assert back.returncode == 0, back.stdout + back.stderr
        _agent(name)
        gone = guest_exec(
            name, ["/bin/sh", "-c", "test -e /root/after-snapshot && echo present || echo gone"]
        )
        assert gone.strip() == "gone"
        assert guest_exec(name, ["/bin/cat", "/etc/i17-second"]).strip() == marker


def test_doctor_reports_an_unreachable_pool_and_a_missing_bridge(tmp_path: Path, real_parts: None) -> None:
    prefix = f"i17dr-{secrets.token_hex(3)}"
    locked = Path(f"/var/lib/virtstack/{prefix}/locked")
    locked.mkdir(parents=True)
    locked.chmod(0o700)  # root only: QEMU's user cannot go through it
    spec = local_spec(prefix, 219)
    host = spec["hosts"]["local"]
    host["pools"] = {prefix: {"path": str(locked / "pool")}}
    bridge = f"vsnobr{secrets.token_hex(2)}"
    host["networks"]["lan"] = {"mode": "bridge", "bridge": bridge}
    spec["vms"] = {prefix: _vm(prefix, firmware="uefi", tpm=True)}
    try:
        with _stack(tmp_path, prefix, spec) as project:
            proc = project.virtstack("doctor", "-s", prefix)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            lines = proc.stdout.splitlines()
            assert (
                f"[error] host local: pool {prefix}: QEMU (user libvirt-qemu) cannot reach {locked}/pool: "
                f"{locked} is mode 0700 and does not let it through — fix: chmod o+x {locked} "
                "(or give libvirt-qemu access to it)"
            ) in lines
            assert (
                f"[error] host local: network lan: host bridge {bridge} does not exist — fix: create it "
                f"(ip link add {bridge} type bridge && ip link set {bridge} up, and enslave the LAN "
                "interface) or use a nat/isolated network"
            ) in lines
            assert "[ok] host local: daemon: qemu:///system answers" in proc.stdout
            assert "[ok] host local: firmware: OVMF present for firmware uefi" in lines
            assert "[ok] host local: tpm: swtpm present for tpm: true" in lines
            assert lines[-1].startswith("2 error(s),")
            # plan runs the cheap checks first: it fails before the engine starts, with the same fixes.
            plan = project.virtstack("plan", "-s", prefix)
            assert plan.returncode == 1
            assert "a host is not ready (nothing was changed; see virtstack doctor)" in plan.stderr
            assert f"chmod o+x {locked}" in plan.stderr
            assert libvirt_inventory(prefix)["pools"] == []
    finally:
        locked.chmod(0o755)
        for path in (locked / "pool", locked, locked.parent):
            if path.exists():
                path.rmdir()
