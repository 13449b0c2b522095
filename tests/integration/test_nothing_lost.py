"""Nothing lost (issue 10), against the real engine and daemon, through the `virtstack` CLI: a stack
touches only what it owns, keeps every disk unless told, and a second `up` changes nothing.

Guests are checked through libvirt only (domain state, the guest agent, the serial console log).
Guests boot only where a test needs its guest agent; everything else runs with `running: false`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.realenv import (
    PROJECT_ROOT,
    URI,
    PulumiProject,
    agent_command,
    domain_info,
    guest_exec,
    libvirt_inventory,
    local_spec,
    wait_for,
)
from virtstack.provider.refresh import refresh_pool

BOOT_TIMEOUT = 300
MARKER_OFFSET_BLOCKS = 2048  # 1 MiB into the raw data disk: no filesystem needed


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert proc.returncode == code, (
        f"exit {proc.returncode}, wanted {code}\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def vm(prefix: str, **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "debian-12",
        "vcpus": 1,
        "memory": "384MiB",
        "disk": "3GiB",
        "nics": [{"network": prefix}],
    }
    spec.update(over)
    return spec


def new_project(tmp_path: Path, spec: dict[str, Any], stack: str) -> PulumiProject:
    spec_file = tmp_path / f"{stack}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    project = PulumiProject(stack=stack, backend=tmp_path / f"state-{stack}", spec_file=spec_file)
    project.init()
    return project


def rewrite(project: PulumiProject, spec: dict[str, Any]) -> None:
    project.spec_file.write_text(yaml.safe_dump(spec))


def up(project: PulumiProject, *extra: str) -> subprocess.CompletedProcess[str]:
    return project.virtstack("up", "-s", project.stack, "--yes", *extra)


def plan_json(project: PulumiProject) -> dict[str, Any]:
    return json.loads(ok(project.virtstack("plan", "-s", project.stack, "--format", "json")))


def no_changes(project: PulumiProject) -> None:
    ok(project.virtstack("plan", "-s", project.stack, "--detailed-exitcode"), 0)


def scrub(prefix: str) -> None:
    """Remove by hand whatever libvirt still holds under `prefix` (after a failed test)."""
    left = libvirt_inventory(prefix)
    for dom in left["domains"]:
        subprocess.run(["virsh", "-c", URI, "destroy", dom], capture_output=True)
        subprocess.run(["virsh", "-c", URI, "undefine", dom, "--nvram"], capture_output=True)
    for item in left["volumes"]:
        pool, vol = item.split("/", 1)
        subprocess.run(["virsh", "-c", URI, "vol-delete", vol, "--pool", pool], capture_output=True)
    import libvirt

    conn = libvirt.open(URI)
    try:  # trashed disks and owner records are named after the stack, not the prefix
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix) and pool.isActive():
                refresh_pool(pool)
                for v in pool.listAllVolumes():
                    v.delete(0)
    finally:
        conn.close()
    for net in left["networks"]:
        subprocess.run(["virsh", "-c", URI, "net-destroy", net], capture_output=True)
        subprocess.run(["virsh", "-c", URI, "net-undefine", net], capture_output=True)
    for pool in left["pools"]:
        subprocess.run(["virsh", "-c", URI, "pool-destroy", pool], capture_output=True)
        subprocess.run(["virsh", "-c", URI, "pool-delete", pool], capture_output=True)
        subprocess.run(["virsh", "-c", URI, "pool-undefine", pool], capture_output=True)


def write_marker(domain: str, marker: str) -> None:
    wait_for(lambda: agent_command(domain, "guest-ping"), BOOT_TIMEOUT, 2, f"{domain}'s agent")
    guest_exec(
        domain,
        ["/bin/sh", "-c", f"printf {marker} | dd of=/dev/vdb bs=512 seek={MARKER_OFFSET_BLOCKS} conv=fsync"],
    )


def read_marker(domain: str, length: int) -> str:
    wait_for(lambda: agent_command(domain, "guest-ping"), BOOT_TIMEOUT, 2, f"{domain}'s agent")
    return guest_exec(
        domain,
        [
            "/bin/sh",
            "-c",
            f"dd if=/dev/vdb bs=512 skip={MARKER_OFFSET_BLOCKS} count=1 2>/dev/null | head -c {length}",
        ],
    )


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"vsn{secrets.token_hex(3)}"
    yield name
    scrub(name)


# ---------------------------------------------------------------- stable identity, consent, the trash


def test_grow_shrink_keeps_identity_and_data_and_the_trash_gives_it_back(
    tmp_path: Path, prefix: str, real_parts: None
) -> None:
    subnet = secrets.randbelow(100) + 100
    spec = local_spec(prefix, subnet)
    group = f"{prefix}-r"
    spec["vms"] = {group: vm(prefix, count=1, data_disks=[{"name": "data", "size": "256MiB"}])}
    project = new_project(tmp_path, spec, prefix)
    try:
        # count 1: the VM is named after its group.
        ok(up(project))
        first = domain_info(URI, group)
        assert first and first["running"]
        marker1 = f"m1-{secrets.token_hex(6)}"
        write_marker(group, marker1)

        # count 1 -> 2: only the new instance is created; the first keeps its name, UUID and disks.
        spec["vms"][group]["count"] = 2
        rewrite(project, spec)
        plan = plan_json(project)
        assert {v["vm"]: v["action"] for v in plan["vms"]} == {f"{group}-2": "create"}, plan
        ok(up(project))
        assert domain_info(URI, group)["uuid"] == first["uuid"]
        second = domain_info(URI, f"{group}-2")
        assert second is not None

        # 2 -> 3: the same.
        spec["vms"][group]["count"] = 3
        rewrite(project, spec)
        ok(up(project))
        assert domain_info(URI, group)["uuid"] == first["uuid"]
        assert domain_info(URI, f"{group}-2")["uuid"] == second["uuid"]

        # 3 -> 2: removes the highest-numbered, and only with consent.
        spec["vms"][group]["count"] = 2
        rewrite(project, spec)
        before = libvirt_inventory(prefix)
        refused = up(project)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"vm {group}-3: data disk data" in refused.stderr, refused.stderr
        assert "--allow-data-loss" in refused.stderr
        assert libvirt_inventory(prefix) == before  # nothing was changed
        ok(up(project, "--allow-data-loss"))
        assert domain_info(URI, f"{group}-3") is None
        assert domain_info(URI, group)["uuid"] == first["uuid"]
        assert domain_info(URI, f"{group}-2")["uuid"] == second["uuid"]
        assert read_marker(group, len(marker1)) == marker1

        # 2 -> 1 with consent: the data disk of -2 goes to the trash, and comes back with its data.
        marker2 = f"m2-{secrets.token_hex(6)}"
        write_marker(f"{group}-2", marker2)
        spec["vms"][group]["count"] = 1
        rewrite(project, spec)
        ok(up(project, "--allow-data-loss"))
        assert domain_info(URI, f"{group}-2") is None
        listing = ok(project.virtstack("trash", "list", "-s", project.stack))
        assert f"{group}-2-data.qcow2" in listing and f"vm {group}-2" in listing, listing
        ok(project.virtstack("trash", "restore", "-s", project.stack, f"{group}-2-data.qcow2"))
        spec["vms"][group]["count"] = 2
        rewrite(project, spec)
        ok(up(project))
        assert read_marker(f"{group}-2", len(marker2)) == marker2
        assert domain_info(URI, group)["uuid"] == first["uuid"]
        no_changes(project)

        # A data disk grown while its VM runs is grown in place through the guest's QEMU (regression:
        # the running domain was looked for by file path, which pool/volume disks do not carry, and
        # qemu-img then failed on the image's write lock): no consent needed, data and UUID kept,
        # and the guest sees the new size.
        spec["vms"][group]["data_disks"][0]["size"] = "320MiB"
        rewrite(project, spec)
        ok(up(project))
        size = guest_exec(group, ["/bin/sh", "-c", "cat /sys/block/vdb/size"]).strip()
        assert int(size) * 512 == 320 * 1024 * 1024, size
        assert read_marker(group, len(marker1)) == marker1
        assert domain_info(URI, group)["uuid"] == first["uuid"]
        no_changes(project)
    finally:
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.virtstack("trash", "empty", "-s", project.stack, "--yes")
        project.remove()


def test_stacks_deployed_with_the_old_names_keep_them(tmp_path: Path, prefix: str, real_parts: None) -> None:
    """Before stable names, `count: 2` on `g` made `g-1` and `g-2`. Such a stack moves to the new rule
    without any VM being replaced: the names its last deployment used are kept."""
    spec = local_spec(prefix, secrets.randbelow(100) + 100)
    group = f"{prefix}-g"
    # What the old rule deployed for `count: 2`, written out as two single VMs.
    spec["vms"] = {f"{group}-1": vm(prefix, running=False), f"{group}-2": vm(prefix, running=False)}
    project = new_project(tmp_path, spec, prefix)
    try:
        ok(up(project))
        uuids = {n: domain_info(URI, n)["uuid"] for n in (f"{group}-1", f"{group}-2")}
        spec["vms"] = {group: vm(prefix, running=False, count=2)}
        rewrite(project, spec)
        no_changes(project)
        spec["vms"][group]["count"] = 3  # growing adds `g-3` and renames nobody
        rewrite(project, spec)
        plan = plan_json(project)
        assert {v["vm"]: v["action"] for v in plan["vms"]} == {f"{group}-3": "create"}, plan
        ok(up(project))
        assert {n: domain_info(URI, n)["uuid"] for n in uuids} == uuids
    finally:
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()


# ---------------------------------------------------------------------------------- ownership


def test_a_second_stack_with_the_same_names_is_refused_and_its_destroy_leaves_the_first(
    tmp_path: Path, prefix: str, real_parts: None
) -> None:
    subnet = secrets.randbelow(100) + 100
    first_spec = local_spec(prefix, subnet)
    first_spec["vms"] = {
        f"{prefix}-one": vm(prefix, running=False, data_disks=[{"name": "d", "size": "64MiB"}])
    }
    first = new_project(tmp_path, first_spec, f"{prefix}a")
    second = None
    try:
        ok(up(first))
        owned = libvirt_inventory(prefix)

        # Same pool and network names (another pool path): refused at plan, before any change.
        second_spec = local_spec(prefix, subnet)
        second_spec["hosts"]["local"]["pools"][prefix]["path"] = f"/var/lib/virtstack/pools/{prefix}-other"
        second_spec["vms"] = {f"{prefix}-two": vm(prefix, running=False)}
        second = new_project(tmp_path, second_spec, f"{prefix}b")
        for command in (("plan", "-s", second.stack), ("up", "-s", second.stack, "--yes")):
            proc = second.virtstack(*command)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            assert (
                f"belongs to stack virtstack/{first.stack}, not to stack virtstack/{second.stack}"
                in proc.stderr
            )
            assert "host local" in proc.stderr
            assert "Traceback" not in proc.stderr
        assert libvirt_inventory(prefix) == owned

        # Only the pool's name the same: the pool alone is refused.
        second_spec["hosts"]["local"]["networks"] = {
            f"{prefix}x": {"mode": "isolated", "cidr": f"10.152.{subnet + 1}.0/24"}
        }
        second_spec["vms"][f"{prefix}-two"]["nics"] = [{"network": f"{prefix}x"}]
        rewrite(second, second_spec)
        proc = second.virtstack("up", "-s", second.stack, "--yes")
        assert proc.returncode == 1 and f"pool {prefix} on host local belongs to stack" in proc.stderr, (
            proc.stderr
        )
        assert libvirt_inventory(prefix) == owned

        # Destroying the second stack leaves every object of the first.
        ok(second.virtstack("destroy", "-s", second.stack, "--yes", "--allow-data-loss"))
        assert libvirt_inventory(prefix) == owned
        no_changes(first)
    finally:
        if second is not None:
            second.remove()
        first.virtstack("destroy", "-s", first.stack, "--yes", "--allow-data-loss", "--no-trash")
        first.remove()


def test_external_pool_and_network_shared_by_two_stacks(
    tmp_path: Path, prefix: str, real_parts: None
) -> None:
    subnet = secrets.randbelow(100) + 100
    owner_spec = local_spec(prefix, subnet)
    owner_spec["vms"] = {f"{prefix}-own": vm(prefix, running=False)}
    owner = new_project(tmp_path, owner_spec, f"{prefix}a")
    user_spec = local_spec(prefix, subnet)
    user_spec["hosts"]["local"]["pools"] = {prefix: {"external": True}}
    user_spec["hosts"]["local"]["networks"][prefix]["external"] = True
    user_spec["vms"] = {
        f"{prefix}-use": vm(prefix, running=False, data_disks=[{"name": "d", "size": "64MiB"}])
    }
    user = new_project(tmp_path, user_spec, f"{prefix}b")
    try:
        # The shared pool and network must exist first: using them never creates them.
        missing = user.virtstack("up", "-s", user.stack, "--yes")
        assert missing.returncode == 1 and "does not exist" in missing.stderr, missing.stderr
        ok(up(owner))
        ok(up(user))
        no_changes(owner)
        no_changes(user)
        used = libvirt_inventory(prefix)
        # The user's volumes carry its stack's name in the shared pool.
        assert f"{prefix}/{user.stack}@{prefix}-use-d.qcow2" in used["volumes"], used

        # The owner goes: the user's domain, disks, the pool and the network it uses all stay.
        ok(owner.virtstack("destroy", "-s", owner.stack, "--yes", "--allow-data-loss", "--no-trash"))
        left = libvirt_inventory(prefix)
        assert left["domains"] == [f"{prefix}-use"]
        assert left["networks"] == [prefix] and left["pools"] == [prefix]
        assert {v for v in used["volumes"] if f"/{user.stack}@" in v} <= set(left["volumes"])
        no_changes(user)

        # The user goes: it deletes its own volumes and nothing of the shared pool or network.
        ok(user.virtstack("destroy", "-s", user.stack, "--yes", "--allow-data-loss", "--no-trash"))
        left = libvirt_inventory(prefix)
        assert left["domains"] == [] and left["networks"] == [prefix] and left["pools"] == [prefix]
        assert not [v for v in left["volumes"] if f"/{user.stack}@" in v], left
    finally:
        user.virtstack("destroy", "-s", user.stack, "--yes", "--allow-data-loss", "--no-trash")
        user.remove()
        owner.virtstack("destroy", "-s", owner.stack, "--yes", "--allow-data-loss", "--no-trash")
        owner.remove()


# ------------------------------------------------------------------------------- exact round trip


def test_decimal_sizes_converge(tmp_path: Path, prefix: str, real_parts: None) -> None:
    spec = local_spec(prefix, secrets.randbelow(100) + 100)
    spec["vms"] = {
        f"{prefix}-a": vm(
            prefix, running=False, memory="600MB", disk="3GB", data_disks=[{"name": "d", "size": "1GB"}]
        ),
        f"{prefix}-b": vm(prefix, running=False, memory="1GB", disk="1.5GiB"),
        f"{prefix}-c": vm(prefix, running=False, memory="3GB", disk="3GB"),
        f"{prefix}-d": vm(
            prefix, running=False, memory="1.5GiB", data_disks=[{"name": "d", "size": "1.5GiB"}]
        ),
    }
    project = new_project(tmp_path, spec, prefix)
    try:
        validate = ok(project.virtstack("validate", "-f", str(project.spec_file)))
        assert "valid" in validate
        ok(up(project))
        no_changes(project)  # a second plan right after up: nothing to change
        assert domain_info(URI, f"{prefix}-a")["memory"] == 573 * 2**20  # 600 MB, as libvirt keeps it
        ok(up(project))
        assert "Nothing to do." in project.transcript[-1]
    finally:
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()


# -------------------------------------------------------------------------------------- protect


def test_protect_survives_destroy_with_consent(tmp_path: Path, prefix: str, real_parts: None) -> None:
    spec = local_spec(prefix, secrets.randbelow(100) + 100)
    keep, other = f"{prefix}-keep", f"{prefix}-other"
    spec["vms"] = {
        keep: vm(prefix, running=False, protect=True, data_disks=[{"name": "d", "size": "64MiB"}]),
        other: vm(prefix, running=False),
    }
    project = new_project(tmp_path, spec, prefix)
    try:
        ok(up(project))
        kept = domain_info(URI, keep)
        ok(project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash"))
        assert domain_info(URI, other) is None
        assert domain_info(URI, keep)["uuid"] == kept["uuid"]
        assert f"{prefix}/{keep}-d.qcow2" in libvirt_inventory(prefix)["volumes"]

        # Removing the VM while it is protected fails; removing the flag first lets it go.
        spec["vms"] = {keep: {**spec["vms"][keep], "protect": False}}
        rewrite(project, spec)
        ok(up(project))
        ok(project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash"))
        assert domain_info(URI, keep) is None
    finally:
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()


# ------------------------------------------------------------------------------- truthful results


def test_a_vm_paused_after_up_fails_the_run(tmp_path: Path, prefix: str, real_parts: None) -> None:
    spec = local_spec(prefix, secrets.randbelow(100) + 100)
    name = f"{prefix}-p"
    spec["vms"] = {name: vm(prefix)}
    project = new_project(tmp_path, spec, prefix)
    try:
        proc = subprocess.Popen(
            [
                str(PROJECT_ROOT / ".venv/bin/virtstack"),
                "up",
                "-s",
                project.stack,
                "--yes",
                "--wait",
                "ready",
            ],
            cwd=PROJECT_ROOT,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "Waiting for the guest agent" in line:
                # The apply is done and the guest is booting: pause it behind virtstack's back.
                subprocess.run(["virsh", "-c", URI, "suspend", name], check=True, capture_output=True)
                break
        rest, err = proc.communicate(timeout=600)
        output = "".join(seen) + rest
        assert proc.returncode == 1, output + err
        assert f"vm {name} on host local: should be running but is paused" in err, err
        assert f"/var/log/libvirt/qemu/{name}-serial0.log" in err
        assert "Traceback" not in err

        # The next up resumes it (it is not running as asked) and says so truthfully.
        healed = ok(up(project))
        assert f"{name}: running" in healed, healed
        assert domain_info(URI, name)["running"]
    finally:
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()


def test_no_state_no_problem_second_up_changes_nothing(tmp_path: Path, prefix: str, real_parts: None) -> None:
    """A lost state file: a new stack of the same name adopts its own objects (recorded owner) and a
    second `up` changes nothing."""
    spec = local_spec(prefix, secrets.randbelow(100) + 100)
    spec["vms"] = {f"{prefix}-s": vm(prefix, running=False, data_disks=[{"name": "d", "size": "64MiB"}])}
    project = new_project(tmp_path, spec, prefix)
    try:
        ok(up(project))
        uuid = domain_info(URI, f"{prefix}-s")["uuid"]
        project.remove()  # the state is lost
        time.sleep(0.1)
        project.init()
        ok(up(project))
        assert domain_info(URI, f"{prefix}-s")["uuid"] == uuid
        no_changes(project)
    finally:
        project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
        project.remove()


def test_an_external_image_in_a_pool_kept_by_hand_is_used_and_left(
    tmp_path: Path, prefix: str, real_parts: None
) -> None:
    """Pool and image made by a person (no virtstack owner record): two stacks use them as `external`,
    nothing is uploaded, and destroying the stacks leaves both."""
    import libvirt

    image = PROJECT_ROOT / ".virtstack/images/debian-12.qcow2"
    conn = libvirt.open(URI)
    try:
        pool = conn.storagePoolDefineXML(
            f"<pool type='dir'><name>{prefix}</name><target><path>/var/lib/virtstack/pools/{prefix}</path>"
            "</target></pool>",
            0,
        )
        pool.build(0)
        pool.create(0)
        size = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", str(image)], capture_output=True, check=True
            ).stdout
        )["virtual-size"]
        vol = pool.createXML(
            f"<volume><name>golden.qcow2</name><capacity>{size}</capacity>"
            "<target><format type='qcow2'/></target></volume>",
            0,
        )
        stream = conn.newStream(0)
        vol.upload(stream, 0, image.stat().st_size, 0)
        with image.open("rb") as f:
            stream.sendAll(lambda _s, n, fh: fh.read(n), f)
        stream.finish()
        golden_key = vol.key()
    finally:
        conn.close()
    projects = []
    try:
        for n, stack in enumerate((f"{prefix}a", f"{prefix}b")):
            spec = local_spec(prefix, secrets.randbelow(100) + 100)
            spec["hosts"]["local"]["pools"] = {prefix: {"external": True}}
            spec["hosts"]["local"]["networks"] = {
                stack: {"mode": "isolated", "cidr": f"10.152.{210 + n}.0/24"}
            }
            spec["images"] = {"golden": {"source": "golden.qcow2", "external": True}}
            spec["vms"] = {f"{stack}-vm": vm(stack, image="golden", running=False)}
            project = new_project(tmp_path, spec, stack)
            projects.append(project)
            ok(up(project))
            no_changes(project)
        left = libvirt_inventory(prefix)
        # Each stack's own disks beside the shared image: no image was uploaded again.
        assert sorted(left["volumes"]) == sorted(
            f"{prefix}/{p.stack}@{p.stack}-vm-{d}" for p in projects for d in ("root.qcow2", "seed.iso")
        ), left
        for project in projects:
            ok(project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash"))
        left = libvirt_inventory(prefix)
        assert left["pools"] == [prefix] and left["volumes"] == [], left
        conn = libvirt.open(URI)
        try:
            assert (
                conn.storagePoolLookupByName(prefix).storageVolLookupByName("golden.qcow2").key()
                == golden_key
            )
        finally:
            conn.close()
    finally:
        for project in projects:
            project.virtstack("destroy", "-s", project.stack, "--yes", "--allow-data-loss", "--no-trash")
            project.remove()
