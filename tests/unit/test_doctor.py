"""`virtstack doctor`'s checks on a fake local machine (no daemon for the cheap ones; libvirt's
in-memory driver for the rest): each finding with its level and fix."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import libvirt
import pytest

from virtstack.fleet import expand_fleet
from virtstack.ops import doctor
from virtstack.spec.loader import parse_spec

ROOT_UID, QEMU_UID, KVM_GID = 0, 64055, 107


def _stat(mode: int, uid: int = ROOT_UID, gid: int = ROOT_UID) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


class FakeEnv(doctor.LocalEnv):
    def __init__(self, tree: dict[str, os.stat_result], nets: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__(Path("/project"))
        self.tree = tree
        self.nets = nets
        self.exists = lambda p: p in self.tree or p in self.nets
        self.stat = lambda p: self.tree[p]
        self.access_read = lambda p: True
        self.statvfs_free = lambda p: 10 * 2**30

    def qemu_user(self) -> tuple[str, int | None, set[int]]:
        return "libvirt-qemu", QEMU_UID, {KVM_GID, QEMU_UID}

    def probe(self) -> dict[str, Any] | None:
        return {"domain_type": "qemu"}


OPEN = {"/": _stat(0o755), "/srv": _stat(0o755)}


def _spec(pool: str, extra: str = "", uri: str = "qemu:///system") -> Any:
    text = f"""
hosts:
  local:
    uri: {uri}
    capacity: {{vcpus: 2, memory: 4GiB, disk: 20GiB}}
    pools: {{vms: {{path: {pool}}}}}
    networks:
      lan: {{mode: bridge, bridge: br0}}
{extra}
images: {{debian-12: {{source: /images/d.qcow2}}}}
vms:
  web: {{image: debian-12, vcpus: 1, memory: 512MiB, disk: 4GiB, firmware: uefi, tpm: true}}
"""
    return parse_spec(text, "s.yaml")


@pytest.mark.parametrize(
    ("tree", "level", "words"),
    [
        (OPEN, "ok", "/srv/vms does not exist yet: up creates it"),
        ({**OPEN, "/srv/vms": _stat(0o700)}, "error", "/srv/vms is mode 0700"),
        ({**OPEN, "/srv": _stat(0o750)}, "error", "/srv is mode 0750"),
        ({**OPEN, "/srv": _stat(0o750, gid=KVM_GID)}, "ok", "does not exist yet"),  # through its group
        ({**OPEN, "/srv": _stat(0o700, uid=QEMU_UID)}, "ok", "does not exist yet"),  # its own directory
        ({**OPEN, "/srv/vms": _stat(0o711)}, "ok", "/srv/vms exists and QEMU can reach it"),
    ],
)
def test_pool_paths_qemu_must_reach(tree: dict[str, os.stat_result], level: str, words: str) -> None:
    (finding,) = [f for f in doctor.cheap_checks(_spec("/srv/vms"), FakeEnv(tree)) if f.check == "pool vms"]
    assert finding.level == level and words in finding.message
    if level == "error":
        assert finding.fix.startswith("chmod o+x ")


def test_missing_bridge_is_an_error_with_its_fix() -> None:
    findings = {f.check: f for f in doctor.cheap_checks(_spec("/srv/vms"), FakeEnv(OPEN))}
    assert findings["network lan"].line() == (
        "[error] host local: network lan: host bridge br0 does not exist — fix: create it (ip link add br0 "
        "type bridge && ip link set br0 up, and enslave the LAN interface) or use a nat/isolated network"
    )
    present = {
        f.check: f
        for f in doctor.cheap_checks(_spec("/srv/vms"), FakeEnv(OPEN, {"/sys/class/net/br0/bridge"}))
    }
    assert present["network lan"].level == "ok"


@pytest.mark.parametrize(
    ("mode", "level", "words"),
    [(0o600, "ok", "is usable"), (0o644, "error", "readable by others"), (None, "error", "does not exist")],
)
def test_ssh_keyfile(mode: int | None, level: str, words: str) -> None:
    key = "/keys/id"
    spec = _spec("/srv/vms", uri=f"qemu+ssh://root@h/system?keyfile={key}")
    tree = dict(OPEN)
    if mode is not None:
        tree[key] = os.stat_result((stat.S_IFREG | mode, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    (finding,) = [f for f in doctor.cheap_checks(spec, FakeEnv(tree)) if f.check == "credentials"]
    assert finding.level == level and words in finding.message


def test_plan_stops_on_the_cheap_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec("/srv/vms")
    monkeypatch.setattr(doctor, "LocalEnv", lambda root: FakeEnv({**OPEN, "/srv": _stat(0o700)}))
    with pytest.raises(doctor.HostNotReady) as err:
        doctor.check_hosts_cheaply(spec, Path("/project"))
    lines = str(err.value).splitlines()
    assert lines[0] == "a host is not ready (nothing was changed; see virtstack doctor):"
    assert [line.split(": ")[1] for line in lines[1:]] == ["pool vms", "network lan"]


def test_host_checks_on_the_in_memory_daemon() -> None:
    spec = _spec("/srv/vms")
    fleet = {"local": expand_fleet(spec)}
    findings = doctor.host_checks(spec, fleet, FakeEnv(OPEN), lambda _uri: libvirt.open("test:///default"))
    by_check = {f.check: f for f in findings}
    assert by_check["daemon"].level == "ok" and "qemu:///system answers" in by_check["daemon"].message
    assert by_check["memory"].message.endswith("for 512 MiB of VM memory")


def test_an_unreachable_daemon_is_an_error() -> None:
    def refuse(uri: str) -> Any:
        raise libvirt.libvirtError(f"Failed to connect socket to '{uri}'")

    spec = _spec("/srv/vms")
    (finding,) = doctor.host_checks(spec, {}, FakeEnv(OPEN), refuse)
    assert finding.level == "error" and finding.check == "daemon"
    assert finding.fix.startswith("start libvirtd on the host")


def test_render_counts() -> None:
    findings = [
        doctor.Finding("a", "daemon", "ok", "fine"),
        doctor.Finding("a", "kvm", "warning", "TCG", "enable KVM"),
    ]
    assert doctor.render(findings) == (
        "[ok] host a: daemon: fine\n"
        "[warning] host a: kvm: TCG — fix: enable KVM\n"
        "0 error(s), 1 warning(s), 1 ok.\n"
    )


class PluginEnv(FakeEnv):
    def __init__(self, installed: bool) -> None:
        super().__init__(OPEN)
        self.installed = installed

    def libvirt_plugin(self) -> tuple[str, bool]:
        return "0.5.4", self.installed


@pytest.mark.parametrize(
    ("backend", "installed", "expected"),
    [
        ("pulumi-libvirt", False, ("error", "needs the engine's resource plugin libvirt 0.5.4, which is")),
        ("pulumi-libvirt", True, ("ok", "resource plugin libvirt 0.5.4 is installed")),
        ("native", False, None),  # the native backend needs no plugin: nothing to say
    ],
)
def test_a_pulumi_libvirt_host_needs_its_plugin(
    backend: str, installed: bool, expected: tuple[str, str] | None
) -> None:
    # `make up` builds the plugin only when a stack file asks for it: a stack that gains such a host
    # later is stopped here, with the fix, before the engine fails to load the plugin.
    spec = parse_spec(
        f"""
hosts:
  local:
    uri: qemu:///system
    backend: {backend}
    capacity: {{vcpus: 2, memory: 4GiB, disk: 20GiB}}
    pools: {{vms: {{path: /srv/vms}}}}
images: {{debian-12: {{source: /images/d.qcow2}}}}
vms:
  web: {{image: debian-12, vcpus: 1, memory: 512MiB, disk: 4GiB}}
""",
        "s.yaml",
    )
    found = [f for f in doctor.cheap_checks(spec, PluginEnv(installed)) if f.check == "plugin"]
    if expected is None:
        assert found == []
        return
    (finding,) = found
    assert finding.level == expected[0] and expected[1] in finding.message
    assert finding.fix == ("make setup (it builds and installs the plugin)" if not installed else "")


def test_the_real_plugin_check_reads_pulumi_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import version

    monkeypatch.setenv("PULUMI_HOME", str(tmp_path))
    wanted, installed = doctor.LocalEnv(Path("/project")).libvirt_plugin()
    assert (wanted, installed) == (version("pulumi-libvirt"), False)
    plugin = tmp_path / "plugins" / f"resource-libvirt-v{wanted}" / "pulumi-resource-libvirt"
    plugin.parent.mkdir(parents=True)
    plugin.write_text("")
    assert doctor.LocalEnv(Path("/project")).libvirt_plugin() == (wanted, True)
