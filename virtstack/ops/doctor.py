"""`virtstack doctor`: what each host of a stack needs before anything is applied, checked and
reported as ok / warning / error with the fix (issue 17). `plan` runs the cheap checks itself.

Public API:
    cheap_checks(spec, fleet_by_host, env) -> list[Finding]     no libvirt connection: local files only
    host_checks(spec, fleet_by_host, env, open_libvirt) -> list[Finding]   the daemon, one per host
    doctor(spec, fleet_by_host, env, open_libvirt) -> list[Finding]
    render(findings) -> str;  errors(findings) -> list[Finding]
    LocalEnv: how the local machine is read (injectable for tests)

Checks per host:
    * daemon: the URI answers (libvirt and hypervisor versions);
    * kvm: KVM or TCG — the probe's decision (.virtstack/hypervisor.json) for local hosts with
      `domain_type: auto`, libvirt's domain capabilities for the type a host uses;
    * pool: a local pool path exists or can be created, and QEMU's user (qemu.conf `user`, Debian's
      libvirt-qemu) can reach it through every directory above it; a remote pool is checked through
      libvirt when it exists (its free space);
    * firmware / tpm: OVMF (UEFI, Secure Boot) and swtpm present when a VM of the host needs them
      (libvirt's domain capabilities);
    * bridge: the host bridge of every bridge network exists (local: /sys/class/net; remote: libvirt);
    * memory / disk: free memory and pool space against what the stack places on the host;
    * credentials: an ssh `keyfile` exists, is readable and private; a TLS `pkipath` holds the
      client certificate, key and CA;
    * plugin: a `backend: pulumi-libvirt` host has the engine's resource plugin `libvirt` at the
      pulumi-libvirt SDK's version (`make up` builds it only when a stack file asks for it;
      `make setup` always does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree as ET

from virtstack.edge import HYPERVISOR_FILE, is_local_uri
from virtstack.errors import VirtstackError
from virtstack.fleet import VmInstance
from virtstack.spec import HostSpec, StackSpec
from virtstack.units import format_size

Level = Literal["ok", "warning", "error"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "error")


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    level: Level
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.level}] host {self.host}: {self.check}: {self.message}"
        return f"{text} — fix: {self.fix}" if self.fix else text


@dataclass
class LocalEnv:
    """The local machine as the checks read it."""

    project_root: Path
    qemu_conf: Path = Path("/etc/libvirt/qemu.conf")
    sys_class_net: Path = Path("/sys/class/net")
    stat: Callable[[str], os.stat_result] = os.stat
    exists: Callable[[str], bool] = os.path.exists
    access_read: Callable[[str], bool] = field(default=lambda p: os.access(p, os.R_OK))
    statvfs_free: Callable[[str], int] = field(
        default=lambda p: os.statvfs(p).f_bavail * os.statvfs(p).f_frsize
    )

    def qemu_user(self) -> tuple[str, int | None, set[int]]:
        """QEMU's user name, uid and group ids (qemu.conf `user`, else Debian's libvirt-qemu)."""
        name = "libvirt-qemu"
        try:
            match = re.search(r'(?m)^\s*user\s*=\s*"([^"]+)"', self.qemu_conf.read_text())
            if match:
                name = match.group(1)
        except OSError:
            pass
        if name in ("root", "+0"):
            return "root", 0, {0}
        try:
            import grp
            import pwd

            entry = pwd.getpwnam(name.lstrip("+"))
            groups = {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem} | {entry.pw_gid}
            return name, entry.pw_uid, groups
        except (KeyError, ImportError):
            return name, None, set()

    def libvirt_plugin(self) -> tuple[str, bool]:
        """The resource plugin `libvirt` the pulumi-libvirt SDK asks the engine for: its version, and
        whether it is installed where the engine looks (PULUMI_HOME's plugins directory)."""
        from importlib.metadata import PackageNotFoundError, version

        from virtstack.settings import Settings

        try:
            wanted = version("pulumi-libvirt")
        except PackageNotFoundError:
            return "?", False
        home = Settings.from_env(dict(os.environ)).pulumi_home
        return wanted, (home / "plugins" / f"resource-libvirt-v{wanted}" / "pulumi-resource-libvirt").exists()

    def probe(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.project_root / HYPERVISOR_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


# ------------------------------------------------------------------------------------ cheap checks


def _traverse_problem(env: LocalEnv, path: str) -> tuple[str, str] | None:
    """Why QEMU's user cannot reach `path` (the nearest existing directory of it), with the fix."""
    user, uid, gids = env.qemu_user()
    if uid == 0:
        return None
    if uid is None:
        return (f"QEMU's user {user} does not exist on this machine", f"set `user` in {env.qemu_conf}")
    parts = Path(path).parts
    for i in range(1, len(parts) + 1):
        current = str(Path(*parts[:i]))
        if not env.exists(current):
            return None  # libvirt creates the rest (as root, 0755)
        st = env.stat(current)
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            mode = stat.S_IMODE(st.st_mode)
            return (
                f"QEMU (user {user}) cannot reach {path}: {current} is mode {mode:04o} and does not let it "
                "through",
                f"chmod o+x {current} (or give {user} access to it)",
            )
    return None


def _pool_checks(name: str, host: HostSpec, env: LocalEnv) -> list[Finding]:
    out = []
    for pool_name, pool in host.pools.items():
        if pool.path is None:
            continue
        check = f"pool {pool_name}"
        problem = _traverse_problem(env, pool.path)
        if problem:
            out.append(Finding(name, check, "error", *problem))
        elif env.exists(pool.path):
            out.append(Finding(name, check, "ok", f"{pool.path} exists and QEMU can reach it"))
        else:
            out.append(Finding(name, check, "ok", f"{pool.path} does not exist yet: up creates it"))
    return out


def _bridge_checks_local(name: str, host: HostSpec, env: LocalEnv) -> list[Finding]:
    out = []
    for net_name, net in host.networks.items():
        if net.mode != "bridge" or net.bridge is None:
            continue
        check = f"network {net_name}"
        if env.exists(str(env.sys_class_net / net.bridge / "bridge")):
            out.append(Finding(name, check, "ok", f"host bridge {net.bridge} exists"))
        elif env.exists(str(env.sys_class_net / net.bridge)):
            out.append(
                Finding(
                    name,
                    check,
                    "error",
                    f"{net.bridge} exists but is not a bridge",
                    f"use a bridge device in `bridge:` (ip -d link show {net.bridge})",
                )
            )
        else:
            out.append(
                Finding(
                    name,
                    check,
                    "error",
                    f"host bridge {net.bridge} does not exist",
                    f"create it (ip link add {net.bridge} type bridge && ip link set {net.bridge} up, and "
                    "enslave the LAN interface) or use a nat/isolated network",
                )
            )
    return out


def _credential_checks(name: str, host: HostSpec, env: LocalEnv) -> list[Finding]:
    parts = urlsplit(host.uri)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    out = []
    if parts.scheme == "qemu+ssh" and "keyfile" in query:
        key = query["keyfile"]
        if not env.exists(key):
            out.append(
                Finding(name, "credentials", "error", f"ssh keyfile {key} does not exist", "fix the path")
            )
        elif not env.access_read(key):
            out.append(
                Finding(
                    name, "credentials", "error", f"ssh keyfile {key} is not readable", f"chmod u+r {key}"
                )
            )
        elif stat.S_IMODE(env.stat(key).st_mode) & 0o077:
            out.append(
                Finding(
                    name,
                    "credentials",
                    "error",
                    f"ssh keyfile {key} is readable by others: ssh refuses to use it",
                    f"chmod 600 {key}",
                )
            )
        else:
            out.append(Finding(name, "credentials", "ok", f"ssh keyfile {key} is usable"))
    if parts.scheme == "qemu+tls":
        pki = query.get("pkipath")
        files = (
            [f"{pki}/clientcert.pem", f"{pki}/clientkey.pem", f"{pki}/cacert.pem"]
            if pki
            else [
                "/etc/pki/libvirt/clientcert.pem",
                "/etc/pki/libvirt/private/clientkey.pem",
                "/etc/pki/CA/cacert.pem",
            ]
        )
        missing = [f for f in files if not env.exists(f)]
        if missing:
            out.append(
                Finding(
                    name,
                    "credentials",
                    "error",
                    f"TLS files missing: {', '.join(missing)}",
                    "put the client certificate, key and CA there (or set pkipath)",
                )
            )
        else:
            out.append(Finding(name, "credentials", "ok", "TLS client certificate, key and CA present"))
    return out


def cheap_checks(spec: StackSpec, env: LocalEnv) -> list[Finding]:
    """Checks that need no libvirt connection: local pool paths and bridges, credential files."""
    out: list[Finding] = []
    for name, host in spec.hosts.items():
        if is_local_uri(host.uri):
            out += _pool_checks(name, host, env)
            out += _bridge_checks_local(name, host, env)
        out += _credential_checks(name, host, env)
        if host.backend == "pulumi-libvirt":
            out += _plugin_checks(name, env)
    return out


def _plugin_checks(name: str, env: LocalEnv) -> list[Finding]:
    wanted, installed = env.libvirt_plugin()
    if installed:
        return [Finding(name, "plugin", "ok", f"resource plugin libvirt {wanted} is installed")]
    return [
        Finding(
            name,
            "plugin",
            "error",
            f"backend pulumi-libvirt needs the engine's resource plugin libvirt {wanted}, "
            "which is not installed",
            "make setup (it builds and installs the plugin)",
        )
    ]


# ------------------------------------------------------------------------------- checks over libvirt


def _needs(vms: Sequence[VmInstance]) -> tuple[bool, bool, bool]:
    return (
        any(vm.firmware == "uefi" for vm in vms),
        any(vm.firmware == "uefi-secure" for vm in vms),
        any(vm.tpm for vm in vms),
    )


def _domcaps(conn: Any, virttype: str, machine: str) -> ET.Element | None:
    try:
        return ET.fromstring(conn.getDomainCapabilities(None, "x86_64", machine, virttype, 0))
    except Exception:  # libvirt refuses an unknown virttype/machine: reported by the caller
        return None


def _firmware_checks(name: str, conn: Any, virttype: str, vms: Sequence[VmInstance]) -> list[Finding]:
    uefi, secure, tpm = _needs(vms)
    out = []
    for needed, machine, what in ((uefi, "pc", "uefi"), (secure, "q35", "uefi-secure")):
        if not needed:
            continue
        caps = _domcaps(conn, virttype, machine)
        values = [v.text or "" for v in caps.findall("os/loader/value")] if caps is not None else []
        firmware = (
            [v.text or "" for v in caps.findall("os/enum[@name='firmware']/value")]
            if caps is not None
            else []
        )
        ok = "efi" in firmware or any("OVMF" in v or "edk2" in v for v in values)
        if secure and what == "uefi-secure" and ok:
            ok = any("secboot" in v or ".ms." in v for v in values) or not values
        out.append(
            Finding(name, "firmware", "ok", f"OVMF present for firmware {what}")
            if ok
            else Finding(
                name,
                "firmware",
                "error",
                f"no OVMF firmware for {what} VMs",
                "install Debian's ovmf package on the host (make setup does it here)",
            )
        )
    if tpm:
        caps = _domcaps(conn, virttype, "pc")
        el = caps.find("devices/tpm") if caps is not None else None
        backends = [v.text for v in el.findall("enum[@name='backendModel']/value")] if el is not None else []
        ok = el is not None and el.get("supported") == "yes" and "emulator" in backends
        out.append(
            Finding(name, "tpm", "ok", "swtpm present for tpm: true")
            if ok
            else Finding(
                name,
                "tpm",
                "error",
                "no TPM emulator (swtpm) for VMs with tpm: true",
                "install Debian's swtpm and swtpm-tools packages on the host (make setup does it here)",
            )
        )
    return out


def _kvm_check(name: str, host: HostSpec, conn: Any, env: LocalEnv) -> tuple[Finding, str]:
    if host.domain_type == "auto" and is_local_uri(host.uri):
        probe = env.probe()
        if probe is None:
            return (
                Finding(
                    name, "kvm", "warning", "not probed yet: guests would run under TCG", "run make setup"
                ),
                "qemu",
            )
        virttype = str(probe.get("domain_type") or "qemu")
    elif host.domain_type == "auto":
        virttype = "kvm"
    else:
        virttype = host.domain_type
    if _domcaps(conn, virttype, "pc") is None:
        return (
            Finding(
                name,
                "kvm",
                "error",
                f"the host cannot run {virttype} guests",
                "set domain_type: qemu (TCG) on this host, or enable KVM (/dev/kvm)"
                if virttype == "kvm"
                else "install qemu-system-x86",
            ),
            virttype,
        )
    if virttype == "qemu":
        return (
            Finding(
                name,
                "kvm",
                "warning",
                "TCG: guests are emulated (slow)",
                "enable KVM (/dev/kvm with nested virtualisation) and run make setup again",
            ),
            virttype,
        )
    return Finding(name, "kvm", "ok", "KVM"), virttype


def _capacity_checks(
    name: str, host: HostSpec, conn: Any, env: LocalEnv, vms: Sequence[VmInstance]
) -> list[Finding]:
    out = []
    wanted_memory = sum(vm.memory_bytes for vm in vms)
    try:
        free = int(conn.getFreeMemory())
        level: Level = "ok" if free >= wanted_memory else "warning"
        out.append(
            Finding(
                name,
                "memory",
                level,
                f"{format_size(free)} free for {format_size(wanted_memory)} of VM memory",
                "" if level == "ok" else "stop other guests or lower the VMs' memory (guests may be killed)",
            )
        )
    except Exception as err:
        out.append(Finding(name, "memory", "warning", f"free memory unknown ({err})"))
    by_pool: dict[str, int] = {}
    for vm in vms:
        pool = vm.pool or (next(iter(host.pools)) if len(host.pools) == 1 else None)
        if pool is not None:
            by_pool[pool] = by_pool.get(pool, 0) + vm.total_disk_bytes
    for pool_name, wanted in sorted(by_pool.items()):
        free_disk = _pool_free(conn, pool_name, host, env)
        if free_disk is None:
            continue
        # Root disks are copy-on-write: they only take what guests write. A full pool still stops them.
        level = "ok" if free_disk >= wanted else "warning"
        out.append(
            Finding(
                name,
                f"disk {pool_name}",
                level,
                f"{format_size(free_disk)} free for up to {format_size(wanted)} of disks",
                "" if level == "ok" else "free space in the pool or make the disks smaller",
            )
        )
    return out


def _pool_free(conn: Any, pool_name: str, host: HostSpec, env: LocalEnv) -> int | None:
    try:
        return int(conn.storagePoolLookupByName(pool_name).info()[3])
    except Exception:
        pass
    path = host.pools[pool_name].path if pool_name in host.pools else None
    if path is None or not is_local_uri(host.uri):
        return None
    current = Path(path)
    while not env.exists(str(current)) and current != current.parent:
        current = current.parent
    try:
        return env.statvfs_free(str(current))
    except OSError:
        return None


def _remote_bridge_checks(name: str, host: HostSpec, conn: Any) -> list[Finding]:
    out = []
    for net_name, net in host.networks.items():
        if net.mode != "bridge" or net.bridge is None:
            continue
        try:
            conn.interfaceLookupByName(net.bridge)
            out.append(Finding(name, f"network {net_name}", "ok", f"host bridge {net.bridge} exists"))
        except Exception as err:
            out.append(
                Finding(
                    name,
                    f"network {net_name}",
                    "warning",
                    f"cannot tell whether host bridge {net.bridge} exists ({str(err).splitlines()[0]})",
                    f"check on the host: ip -d link show {net.bridge}",
                )
            )
    return out


def host_checks(
    spec: StackSpec,
    fleet_by_host: Mapping[str, Sequence[VmInstance]],
    env: LocalEnv,
    open_libvirt: Callable[[str], Any],
) -> list[Finding]:
    out: list[Finding] = []
    for name, host in spec.hosts.items():
        try:
            conn = open_libvirt(host.uri)
        except Exception as err:
            out.append(
                Finding(
                    name,
                    "daemon",
                    "error",
                    f"{host.uri} does not answer: {str(err).splitlines()[0] if str(err) else err}",
                    "start libvirtd on the host (here: scripts/hypervisor-up.sh) and check the URI",
                )
            )
            continue
        try:
            version = _version(conn)
            out.append(Finding(name, "daemon", "ok", f"{host.uri} answers ({version})"))
            kvm, virttype = _kvm_check(name, host, conn, env)
            out.append(kvm)
            vms = fleet_by_host.get(name, ())
            out += _firmware_checks(name, conn, virttype, vms)
            if not is_local_uri(host.uri):
                out += _remote_bridge_checks(name, host, conn)
            out += _capacity_checks(name, host, conn, env, vms)
        finally:
            with contextlib.suppress(Exception):
                conn.close()
    return out


def _version(conn: Any) -> str:
    def dotted(n: int) -> str:
        return f"{n // 1000000}.{n // 1000 % 1000}.{n % 1000}"

    try:
        return f"libvirt {dotted(conn.getLibVersion())}, {conn.getType()} {dotted(conn.getVersion())}"
    except Exception:
        return "version unknown"


def doctor(
    spec: StackSpec,
    fleet_by_host: Mapping[str, Sequence[VmInstance]],
    env: LocalEnv,
    open_libvirt: Callable[[str], Any],
) -> list[Finding]:
    findings = cheap_checks(spec, env) + host_checks(spec, fleet_by_host, env, open_libvirt)
    order = list(spec.hosts)
    return sorted(findings, key=lambda f: order.index(f.host) if f.host in order else len(order))


class HostNotReady(VirtstackError):
    """The cheap checks found errors: nothing was changed."""


def check_hosts_cheaply(spec: StackSpec, project_root: Path) -> None:
    """What `plan` and `up` run before the engine: cheap_checks, raising on any error."""
    found = errors(cheap_checks(spec, LocalEnv(project_root)))
    if found:
        lines = "\n".join(f.line() for f in found)
        raise HostNotReady(f"a host is not ready (nothing was changed; see virtstack doctor):\n{lines}")


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def render(findings: Sequence[Finding]) -> str:
    lines = [f.line() for f in findings]
    counts = {level: sum(1 for f in findings if f.level == level) for level in LEVELS}
    lines.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['ok']} ok.")
    return "\n".join(lines) + "\n"
