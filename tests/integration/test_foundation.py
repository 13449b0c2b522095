"""Foundation: the real engine, virtstack's libvirt backend and a real guest, end to end.

`pulumi up` of a one-VM stack (pool, base volume from the built image, copy-on-write root, cloud-init
seed, domain), cloud-init observed through libvirt (guest agent hostname, serial console marker), a
no-change preview, then `pulumi destroy` leaves nothing of the test in libvirt.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.realenv import (
    PulumiProject,
    agent_command,
    console_log,
    libvirt_inventory,
    local_spec,
    wait_for,
)

BOOT_TIMEOUT = 300  # TCG on 2 shared cores: ~25-40 s alone, far more when the machine is busy


def one_vm_spec(prefix: str, subnet: int, hostname: str) -> dict:
    spec = local_spec(prefix, subnet, vcpus=2, memory="2GiB", disk="20GiB")
    spec["vms"] = {
        f"{prefix}-vm": {
            "image": "debian-12",
            "vcpus": 1,
            "memory": "512MiB",
            "disk": "3GiB",
            "nics": [{"network": prefix}],
            "cloud_init": {"hostname": hostname, "users": [{"name": "ops"}]},
        }
    }
    return spec


@pytest.fixture
def project(tmp_path: Path, real_parts: None):
    prefix = f"vsit{secrets.token_hex(3)}"
    spec_file = tmp_path / "stack.yaml"
    hostname = f"{prefix}-guest"
    spec_file.write_text(yaml.safe_dump(one_vm_spec(prefix, secrets.randbelow(200) + 20, hostname)))
    proj = PulumiProject(stack=prefix, backend=tmp_path / "state", spec_file=spec_file)
    # Raw `pulumi destroy` keeps deleted disks in the pool's trash by default; this test wants nothing left.
    proj.extra_env["VIRTSTACK_NO_TRASH"] = "1"
    proj.init()
    proj.prefix = prefix  # type: ignore[attr-defined]
    proj.hostname = hostname  # type: ignore[attr-defined]
    yield proj
    # Clean up even when the test failed half-way, so a failed run never poisons the next one.
    proj.pulumi("destroy", "--yes", "--skip-preview", check=False)
    proj.remove()
    leftovers = libvirt_inventory(prefix)
    if any(leftovers.values()):
        subprocess.run(["virsh", "-c", "qemu:///system", "destroy", f"{prefix}-vm"], capture_output=True)


def test_up_boots_a_real_guest_with_cloud_init_then_destroy_leaves_nothing(project: PulumiProject) -> None:
    prefix, hostname = project.prefix, project.hostname  # type: ignore[attr-defined]
    vm = f"{prefix}-vm"

    project.pulumi("up", "--yes", "--skip-preview")

    outputs = project.outputs()
    assert outputs["placement"] == {vm: "local"}
    assert outputs["vms"][vm]["running"] is True
    assert outputs["vms"][vm]["state"] == "running"
    assert libvirt_inventory(prefix)["domains"] == [vm]

    # cloud-init applied the hostname we gave it: asked through the guest agent, not the network.
    reply = wait_for(
        lambda: agent_command(vm, "guest-get-host-name"), BOOT_TIMEOUT, 2, "the guest agent to answer"
    )
    assert reply["return"]["host-name"] == hostname
    log = wait_for(
        lambda: (lambda t: t if "Cloud-init v." in t and "finished at" in t else "")(console_log(vm)),
        BOOT_TIMEOUT,
        2,
        "cloud-init's final message on the serial console",
    )
    assert "finished at" in log

    # A second run changes nothing.
    preview = project.pulumi("preview", "--expect-no-changes", "--diff", check=False)
    assert preview.returncode == 0, preview.stdout[-4000:]

    project.pulumi("destroy", "--yes", "--skip-preview")
    assert libvirt_inventory(prefix) == {"domains": [], "networks": [], "pools": [], "volumes": []}


def test_a_spec_error_stops_pulumi_with_one_clean_line_before_any_libvirt_call(
    tmp_path: Path, real_parts: None
) -> None:
    prefix = f"vsit{secrets.token_hex(3)}"
    spec = one_vm_spec(prefix, 30, "x")
    spec["vms"][f"{prefix}-vm"]["nics"] = [{"network": prefix, "ip": "10.88.0.5"}]
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    project = PulumiProject(stack=prefix, backend=tmp_path / "state", spec_file=spec_file)
    project.init()

    result = project.pulumi("up", "--yes", "--skip-preview", check=False)

    assert result.returncode != 0
    expected = (
        f"{spec_file}: vms.{prefix}-vm.nics[0].ip: 10.88.0.5 is outside network {prefix} (10.152.30.0/24)"
    )
    assert expected in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    project.remove()
    assert libvirt_inventory(prefix) == {"domains": [], "networks": [], "pools": [], "volumes": []}
