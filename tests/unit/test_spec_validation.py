"""Stack file validation, table driven: (patch to a valid stack, exact issue lines).

A patch maps a dotted path ("vms.web.nics.0.ip"; list items by index) to a
new value, or to DELETE to drop the key.  Each case lists *every* line the
resulting SpecError must print, so a new spurious issue fails the test too.
"""

# Expected messages are kept whole on one line each, so they can be grepped for.
# ruff: noqa: E501, RUF001

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virtstack.errors import SpecError, SpecIssue
from virtstack.spec import StackSpec
from virtstack.spec.loader import format_loc, load_spec, parse_spec

F = "stacks/lab.yaml"
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "specs"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdXwOaFbwvfEXd5Oxqh0G8dfdXlDyFhJyxpHAdnFUxY ops@example"


def _host(uri: str) -> dict[str, Any]:
    return {
        "uri": uri,
        "capacity": {"vcpus": 8, "memory": "16GiB", "disk": "200GiB"},
        "pools": {"vms": {"path": "/var/lib/virtstack/pools/vms"}},
        "networks": {"lab": {"mode": "nat", "cidr": "10.77.0.0/24", "dhcp": True}},
    }


BASE: dict[str, Any] = {
    "hosts": {
        "node-a": _host("qemu:///system"),
        "node-b": _host("qemu+ssh://ops@node-b.example/system"),
    },
    "images": {"debian-12": {"source": "images/debian-12.qcow2"}},
    "vms": {
        "web": {
            "count": 3,
            "image": "debian-12",
            "vcpus": 1,
            "memory": "512MiB",
            "disk": "4GiB",
            "nics": [{"network": "lab", "ip": "10.77.0.10"}],
            "cloud_init": {"users": [{"name": "ops", "ssh_authorized_keys": [KEY], "sudo": True}]},
        }
    },
}

DELETE = object()


def patched(patch: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for dotted, value in patch.items():
        parts: list[Any] = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        target: Any = doc
        for part in parts[:-1]:
            target = target.setdefault(part, {}) if isinstance(target, dict) else target[part]
        if value is DELETE:
            del target[parts[-1]]
        elif isinstance(target, list) and parts[-1] == len(target):
            target.append(value)
        else:
            target[parts[-1]] = value
    return doc


def issues_of(text: str) -> list[str]:
    try:
        parse_spec(text, F)
    except SpecError as error:
        return str(error).splitlines()
    return []


def issues_of_patch(patch: dict[str, Any]) -> list[str]:
    return issues_of(yaml.safe_dump(patched(patch), sort_keys=False))


def lines(*items: str) -> list[str]:
    return [f"{F}: {item}" for item in items]


def at(*items: str) -> list[str]:
    """Issues with a YAML position: "3:1: message" -> "stacks/lab.yaml:3:1: message"."""
    return [f"{F}:{item}" for item in items]


NAT_B = {"mode": "nat", "cidr": "10.88.0.0/24"}

# --------------------------------------------------------------------- valid

VALID: list[tuple[str, dict[str, Any]]] = [
    ("base", {}),
    ("no vms or images", {"vms": DELETE, "images": DELETE}),
    ("count omitted", {"vms.web.count": DELETE}),
    ("pool named", {"vms.web.pool": "vms"}),
    ("dhcp nic", {"vms.web.nics.0.ip": DELETE}),
    ("no nics", {"vms.web.nics": []}),
    ("explicit mac count 1", {"vms.web.count": 1, "vms.web.nics.0.mac": "52:54:00:AB:cd:01"}),
    (
        "raw user data",
        {"vms.web.cloud_init": DELETE, "vms.web.user_data": "#cloud-config\npackages: [git]\n"},
    ),
    ("shebang user data", {"vms.web.cloud_init": DELETE, "vms.web.user_data": "#!/bin/sh\necho hi\n"}),
    ("pinned", {"vms.web.host": "node-b"}),
    ("domain types", {"hosts.node-a.domain_type": "kvm", "hosts.node-b.domain_type": "qemu"}),
    ("pack", {"placement": {"strategy": "pack"}}),
    ("uri tls", {"hosts.node-b.uri": "qemu+tls://node-b.example/system"}),
    (
        "uri tcp port",
        {
            "hosts.node-b.uri": "qemu+tcp://node-b.example:16509/system",
            "hosts.node-b.insecure_transport": True,
        },
    ),
    ("uri unix socket", {"hosts.node-b.uri": "qemu+unix:///system?socket=/run/libvirt/virtqemud-sock"}),
    ("uri session", {"hosts.node-b.uri": "qemu:///session"}),
    ("uri test", {"hosts.node-b.uri": "test:///default"}),
    ("uri ssh keyfile", {"hosts.node-b.uri": "qemu+ssh://ops@node-b:2222/system?keyfile=/k&known_hosts=/kh"}),
    (
        "image url",
        {
            "images.debian-12.source": "https://example.org/debian-12.qcow2?x=1",
            "images.debian-12.sha256": "a" * 64,
        },
    ),
    ("image img with format", {"images.debian-12": {"source": "d.img", "format": "qcow2"}}),
    ("image raw", {"images.debian-12.source": "/srv/images/d.raw"}),
    ("sizes in bytes", {"vms.web.memory": 536870912, "vms.web.disk": "4294967296"}),
    (
        "data disks",
        {"vms.web.data_disks": [{"name": "data", "size": "2GiB"}, {"name": "logs", "size": "1G"}]},
    ),
    ("isolated net", {"hosts.node-a.networks.iso": {"mode": "isolated", "cidr": "10.79.0.0/24"}}),
    (
        "bridge net without cidr",
        {
            "hosts.node-a.networks.lan": {"mode": "bridge", "bridge": "br0"},
            "vms.web.nics.1": {"network": "lan"},
            "vms.web.host": "node-a",
        },
    ),
    (
        "bridge static with gateway",
        {
            "hosts.node-a.networks.lan": {
                "mode": "bridge",
                "bridge": "br0",
                "cidr": "192.168.1.0/24",
                "gateway": "192.168.1.254",
            },
            "vms.web.nics.1": {"network": "lan", "ip": "192.168.1.1"},
            "vms.web.host": "node-a",
        },
    ),
    (
        "full cloud init",
        {
            "vms.web.cloud_init": {
                "domain": "lab.example.com",
                "users": [
                    {"name": "ops", "password": "s3cret", "sudo": "ALL=(ALL) ALL", "groups": ["adm"]},
                    {"name": "app", "sudo": False, "shell": "/bin/sh"},
                ],
                "packages": ["nginx", "git"],
                "runcmd": ["systemctl enable --now nginx", ["touch", "/x"]],
                "write_files": [
                    {
                        "path": "/etc/x",
                        "content": "a\n",
                        "permissions": "0644",
                        "owner": "ops:ops",
                        "defer": True,
                    }
                ],
            }
        },
    ),
    ("hostname count 1", {"vms.web.count": 1, "vms.web.cloud_init.hostname": "www"}),
    ("last static before dhcp", {"vms.web.nics.0.ip": "10.77.0.125"}),
    ("count 1 at dhcp edge", {"vms.web.count": 1, "vms.web.nics.0.ip": "10.77.0.127"}),
    (
        "dhcp off: upper half usable",
        {
            "hosts.node-a.networks.lab.dhcp": False,
            "hosts.node-b.networks.lab.dhcp": False,
            "vms.web.nics.0.ip": "10.77.0.252",
        },
    ),
    (
        "same ip on different networks",
        {
            "hosts.node-a.networks.other": NAT_B,
            "hosts.node-b.networks.other": NAT_B,
            "vms.db": {
                "image": "debian-12",
                "vcpus": 1,
                "memory": "1GiB",
                "disk": "1GiB",
                "nics": [{"network": "other", "ip": "10.88.0.10"}],
            },
        },
    ),
    ("x- keys ignored", {"x-defaults": {"vcpus": 1}}),
    # --- shared objects, protection, trash
    ("external pool without path", {"hosts.node-a.pools.vms": {"external": True}}),
    ("external pool with path", {"hosts.node-a.pools.vms": {"external": True, "path": "/srv/shared"}}),
    ("external network", {"hosts.node-a.networks.lab.external": True}),
    ("protect", {"vms.web.protect": True}),
    ("trash kept 0 days", {"trash_days": 0}),
    ("trash kept 10 years", {"trash_days": 3650}),
    (
        "vm named by an int",
        {"vms.web": DELETE, "vms.123": {"image": "debian-12", "vcpus": 1, "memory": "1GiB", "disk": "1GiB"}},
    ),
]


@pytest.mark.parametrize(("patch"), [case[1] for case in VALID], ids=[case[0] for case in VALID])
def test_valid(patch: dict[str, Any]) -> None:
    assert issues_of_patch(patch) == []


# ------------------------------------------------------------------- invalid

INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    # --- keys and required fields
    ("unknown vm key", {"vms.web.cpus": 2}, lines("vms.web: unknown key 'cpus' (did you mean 'vcpus'?)")),
    ("unknown top key", {"vm": {}}, lines("unknown key 'vm' (did you mean 'vms'?)")),
    ("unknown nic key", {"vms.web.nics.0.address": "x"}, lines("vms.web.nics[0]: unknown key 'address'")),
    (
        "unknown capacity key",
        {"hosts.node-a.capacity.cpus": 1},
        lines("hosts.node-a.capacity: unknown key 'cpus' (did you mean 'vcpus'?)"),
    ),
    ("missing image", {"vms.web.image": DELETE}, lines("vms.web.image: required")),
    ("missing hosts", {"hosts": DELETE}, lines("hosts: required")),
    ("empty hosts", {"hosts": {}}, lines("hosts: must have at least 1 entry")),
    ("no pools", {"hosts.node-a.pools": {}}, lines("hosts.node-a.pools: must have at least 1 entry")),
    ("vms not a mapping", {"vms": ["web"]}, lines("vms: must be a mapping")),
    ("nics not a list", {"vms.web.nics": {"network": "lab"}}, lines("vms.web.nics: must be a list")),
    # --- names
    (
        "uppercase name",
        {"vms.web": DELETE, "vms.Web": BASE["vms"]["web"]},
        lines("vms: invalid name 'Web': must be lowercase"),
    ),
    (
        "underscore name",
        {"hosts.node-a.networks.my_net": NAT_B},
        lines(
            "hosts.node-a.networks: invalid name 'my_net': may only contain lowercase letters, digits and '-'"
        ),
    ),
    (
        "dash edge",
        {"images.-x": {"source": "a.qcow2"}},
        lines("images: invalid name '-x': must start and end with a letter or digit"),
    ),
    (
        "long name",
        {"images." + "a" * 64: {"source": "a.qcow2"}},
        lines(f"images: invalid name '{'a' * 39}…': is 64 characters long (at most 63)"),
    ),
    (
        "boolean name",
        {"vms.web.image": True},
        lines(
            "vms.web.image: must be a name, not a boolean (YAML reads yes/no/on/off/true/false as booleans; quote it)"
        ),
    ),
    (
        "name too long with count",
        {"vms.web": DELETE, "vms." + "w" * 62: BASE["vms"]["web"]},
        lines(
            f"vms.{'w' * 62}: instance names such as {'w' * 62}-3 would be 64 characters long (at most 63); "
            "shorten the group name"
        ),
    ),
    # --- scalars
    ("vcpus zero", {"vms.web.vcpus": 0}, lines("vms.web.vcpus: must be at least 1")),
    ("vcpus string", {"vms.web.vcpus": "2"}, lines("vms.web.vcpus: must be an integer")),
    ("vcpus bool", {"vms.web.vcpus": True}, lines("vms.web.vcpus: must be an integer")),
    ("vcpus float", {"vms.web.vcpus": 1.5}, lines("vms.web.vcpus: must be an integer")),
    (
        "memory too small",
        {"vms.web.memory": "64MiB"},
        lines("vms.web.memory: must be at least 128 MiB (got 64 MiB)"),
    ),
    (
        "memory unit",
        {"vms.web.memory": "512 MiBs"},
        lines(
            "vms.web.memory: unknown size unit 'MiBs' in '512 MiBs' (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"
        ),
    ),
    ("disk zero", {"vms.web.disk": 0}, lines("vms.web.disk: must be greater than 0")),
    ("disk negative", {"vms.web.disk": "-4GiB"}, lines("vms.web.disk: must not be negative")),
    (
        "capacity memory float",
        {"hosts.node-a.capacity.memory": 1.5},
        lines(
            "hosts.node-a.capacity.memory: a bare number must be a whole number of bytes; "
            "add a unit for fractions, e.g. 1.5GiB"
        ),
    ),
    ("count zero", {"vms.web.count": 0}, lines("vms.web.count: must be at least 1")),
    ("count huge", {"vms.web.count": 10001}, lines("vms.web.count: must be at most 10000")),
    ("running string", {"vms.web.running": "yes please"}, lines("vms.web.running: must be true or false")),
    (
        "domain type",
        {"hosts.node-a.domain_type": "xen"},
        lines("hosts.node-a.domain_type: must be 'auto', 'kvm' or 'qemu' (got 'xen')"),
    ),
    (
        "strategy",
        {"placement": {"strategy": "random"}},
        lines("placement.strategy: must be 'spread' or 'pack' (got 'random')"),
    ),
    # --- URIs
    (
        "uri scheme",
        {"hosts.node-b.uri": "xen:///system"},
        lines(
            "hosts.node-b.uri: invalid libvirt URI 'xen:///system': the scheme must be one of "
            "qemu, qemu+ssh, qemu+tls, qemu+tcp, qemu+unix, test"
        ),
    ),
    (
        "uri no scheme",
        {"hosts.node-b.uri": "node-b"},
        lines(
            "hosts.node-b.uri: invalid libvirt URI 'node-b': the scheme must be one of "
            "qemu, qemu+ssh, qemu+tls, qemu+tcp, qemu+unix, test"
        ),
    ),
    (
        "uri path",
        {"hosts.node-b.uri": "qemu:///foo"},
        lines("hosts.node-b.uri: libvirt URI 'qemu:///foo' must end in /system or /session"),
    ),
    (
        "uri ssh no host",
        {"hosts.node-b.uri": "qemu+ssh:///system"},
        lines(
            "hosts.node-b.uri: qemu+ssh URI 'qemu+ssh:///system' needs a host, e.g. qemu+ssh://user@host/system"
        ),
    ),
    (
        "uri unix host",
        {"hosts.node-b.uri": "qemu+unix://h/system"},
        lines(
            "hosts.node-b.uri: qemu+unix URI 'qemu+unix://h/system' must not name a host (use qemu+unix:///...)"
        ),
    ),
    (
        "uri space",
        {"hosts.node-b.uri": "qemu:///system "},
        lines("hosts.node-b.uri: invalid libvirt URI 'qemu:///system ': contains whitespace"),
    ),
    (
        "uri bad port",
        {"hosts.node-b.uri": "qemu+tcp://h:99999/system"},
        lines("hosts.node-b.uri: invalid libvirt URI 'qemu+tcp://h:99999/system'"),
    ),
    (
        "uri not a string",
        {"hosts.node-b.uri": 5},
        lines("hosts.node-b.uri: must be a libvirt URI written as a string"),
    ),
    # --- networks
    (
        "cidr host bits",
        {"hosts.node-a.networks.lab.cidr": "10.77.0.5/24"},
        lines("hosts.node-a.networks.lab.cidr: 10.77.0.5/24 has host bits set (did you mean 10.77.0.0/24?)"),
    ),
    (
        "cidr ipv6",
        {"hosts.node-a.networks.lab.cidr": "fd00::/64"},
        lines("hosts.node-a.networks.lab.cidr: 'fd00::/64' is an IPv6 network; only IPv4 is supported"),
    ),
    (
        "cidr /31",
        {"hosts.node-a.networks.lab.cidr": "10.77.0.0/31"},
        lines("hosts.node-a.networks.lab.cidr: prefix /31 is too small a network (at most /30)"),
    ),
    (
        "cidr no prefix",
        {"hosts.node-a.networks.lab.cidr": "10.77.0.0"},
        lines("hosts.node-a.networks.lab.cidr: '10.77.0.0' is not in CIDR form (e.g. 10.77.0.0/24)"),
    ),
    (
        "cidr junk",
        {"hosts.node-a.networks.lab.cidr": "lab/24"},
        lines("hosts.node-a.networks.lab.cidr: invalid network 'lab/24' (expected e.g. 10.77.0.0/24)"),
    ),
    (
        "nat without cidr",
        {"hosts.node-a.networks.lab.cidr": DELETE},
        lines("hosts.node-a.networks.lab.cidr: required for nat networks"),
    ),
    (
        "nat with bridge and gateway",
        {"hosts.node-a.networks.lab.bridge": "br0", "hosts.node-a.networks.lab.gateway": "10.77.0.254"},
        lines(
            "hosts.node-a.networks.lab.bridge: only allowed when mode is bridge",
            "hosts.node-a.networks.lab.gateway: only allowed for bridge networks (nat networks use the .1 address)",
        ),
    ),
    (
        "bridge without bridge",
        {"hosts.node-a.networks.lan": {"mode": "bridge"}},
        lines(
            "hosts.node-a.networks.lan.bridge: required for bridge networks: an existing host bridge, e.g. br0"
        ),
    ),
    (
        "bridge with dhcp",
        {"hosts.node-a.networks.lan": {"mode": "bridge", "bridge": "br0", "dhcp": True}},
        lines(
            "hosts.node-a.networks.lan.dhcp: must be false for bridge networks: libvirt serves no DHCP on a host "
            "bridge (NICs without ip still use the LAN's DHCP server)"
        ),
    ),
    (
        "bridge gateway outside",
        {
            "hosts.node-a.networks.lan": {
                "mode": "bridge",
                "bridge": "br0",
                "cidr": "192.168.1.0/24",
                "gateway": "192.168.2.1",
            }
        },
        lines("hosts.node-a.networks.lan.gateway: 192.168.2.1 is not a host address of 192.168.1.0/24"),
    ),
    (
        "bridge gateway without cidr",
        {"hosts.node-a.networks.lan": {"mode": "bridge", "bridge": "br0", "gateway": "192.168.2.1"}},
        lines("hosts.node-a.networks.lan.gateway: needs cidr to be set"),
    ),
    (
        "bridge name",
        {"hosts.node-a.networks.lan": {"mode": "bridge", "bridge": "a bridge"}},
        lines(
            "hosts.node-a.networks.lan.bridge: invalid bridge interface name 'a bridge' "
            "(at most 15 letters, digits, '_', '.', '-')"
        ),
    ),
    (
        "mode",
        {"hosts.node-a.networks.lab.mode": "bridged"},
        lines("hosts.node-a.networks.lab.mode: must be 'nat', 'isolated' or 'bridge' (got 'bridged')"),
    ),
    (
        "dhcp string",
        {"hosts.node-a.networks.lab.dhcp": "on"},
        lines("hosts.node-a.networks.lab.dhcp: must be true or false"),
    ),
    (
        "static address in no host's segment of a network",
        {"hosts.node-b.networks.lab.cidr": "10.87.0.0/24", "vms.web.nics.0.ip": "10.99.0.10"},
        lines(
            "vms.web.nics[0].ip: 10.99.0.10 lies in no host's segment of network lab "
            "(10.77.0.0/24 on node-a; 10.87.0.0/24 on node-b)"
        ),
    ),
    (
        "static address checked against each host's segment holding it",
        {"hosts.node-b.networks.lab.dhcp": False, "vms.web.count": 1, "vms.web.nics.0.ip": "10.77.0.200"},
        lines(
            "vms.web.nics[0].ip: 10.77.0.200 is inside the DHCP range of network lab (10.77.0.128–10.77.0.254) on host node-a"
        ),
    ),
    (
        "pinned static address checked against its host's segment",
        {"hosts.node-b.networks.lab.cidr": "10.87.0.0/24", "vms.web.host": "node-b"},
        lines("vms.web.nics[0].ip: 10.77.0.10 is outside network lab (10.87.0.0/24)"),
    ),
    (
        "required anti-affinity on a group pinned to one host",
        {"vms.web.anti_affinity": "required", "vms.web.host": "node-a"},
        lines(
            "vms.web.anti_affinity: required puts each VM of group web on its own host, but host: pins "
            "all 3 to node-a"
        ),
    ),
    (
        "anti-affinity value",
        {"vms.web.anti_affinity": "always"},
        lines("vms.web.anti_affinity: must be 'required' or 'preferred' (got 'always')"),
    ),
    (
        "overcommit below one",
        {"hosts.node-a.overcommit": {"vcpus": 0.5}},
        lines("hosts.node-a.overcommit.vcpus: must be at least 1.0"),
    ),
    (
        "overcommit as a string",
        {"hosts.node-a.overcommit": {"memory": "2"}},
        lines("hosts.node-a.overcommit.memory: must be a number"),
    ),
    (
        "host state",
        {"hosts.node-a.state": "maintenance"},
        lines("hosts.node-a.state: must be 'active', 'cordoned' or 'drained' (got 'maintenance')"),
    ),
    (
        "overlapping cidrs",
        {
            "hosts.node-a.networks.big": {"mode": "isolated", "cidr": "10.0.0.0/8"},
            "hosts.node-a.networks.small": {"mode": "isolated", "cidr": "10.200.0.0/24"},
        },
        lines(
            "hosts.node-a.networks.lab.cidr: 10.77.0.0/24 overlaps network big (10.0.0.0/8) on the same host",
            "hosts.node-a.networks.small.cidr: 10.200.0.0/24 overlaps network big (10.0.0.0/8) on the same host",
        ),
    ),
    (
        "same cidr twice",
        {"hosts.node-a.networks.lab2": {"mode": "nat", "cidr": "10.77.0.0/24"}},
        lines(
            "hosts.node-a.networks.lab2.cidr: 10.77.0.0/24 overlaps network lab (10.77.0.0/24) on the same host"
        ),
    ),
    (
        "pool path twice",
        {"hosts.node-a.pools.other": {"path": "/var/lib/virtstack/pools/vms/"}},
        lines("hosts.node-a.pools.other.path: /var/lib/virtstack/pools/vms/ is also the path of pool vms"),
    ),
    (
        "pool relative path",
        {"hosts.node-a.pools.vms.path": "pools/vms"},
        lines("hosts.node-a.pools.vms.path: must be an absolute path (got 'pools/vms')"),
    ),
    (
        "pool dotdot",
        {"hosts.node-a.pools.vms.path": "/var/../etc"},
        lines("hosts.node-a.pools.vms.path: must not contain '..' (got '/var/../etc')"),
    ),
    # --- images
    (
        "image img",
        {"images.debian-12.source": "images/debian-12.img"},
        lines(
            "images.debian-12.format: required: the format cannot be told from the file name "
            "(.qcow2 means qcow2, .raw means raw); set qcow2 or raw"
        ),
    ),
    (
        "image compressed",
        {"images.debian-12.source": "debian-12.qcow2.xz", "images.debian-12.format": "qcow2"},
        lines("images.debian-12.source: compressed images are not supported; decompress it first"),
    ),
    (
        "image ftp",
        {"images.debian-12.source": "ftp://example.org/d.qcow2"},
        lines("images.debian-12.source: unsupported URL scheme 'ftp' (use https or a local path)"),
    ),
    (
        "image url without host",
        {"images.debian-12.source": "https:///d.qcow2"},
        lines("images.debian-12.source: URL 'https:///d.qcow2' has no host"),
    ),
    (
        "image format",
        {"images.debian-12.format": "vmdk"},
        lines("images.debian-12.format: must be 'qcow2' or 'raw' (got 'vmdk')"),
    ),
    (
        "image source empty",
        {"images.debian-12.source": ""},
        lines("images.debian-12.source: must be a non-empty path or URL without surrounding whitespace"),
    ),
    # --- NICs and addresses
    (
        "ip outside",
        {"vms.web.nics.0.ip": "10.88.0.5"},
        lines("vms.web.nics[0].ip: 10.88.0.5 is outside network lab (10.77.0.0/24)"),
    ),
    (
        "ip invalid",
        {"vms.web.nics.0.ip": "10.77.0.300"},
        lines("vms.web.nics[0].ip: invalid IPv4 address '10.77.0.300'"),
    ),
    (
        "ip with prefix",
        {"vms.web.nics.0.ip": "10.77.0.10/24"},
        lines(
            "vms.web.nics[0].ip: write the address without a prefix ('10.77.0.10/24'); the prefix comes from the "
            "network"
        ),
    ),
    (
        "ip v6",
        {"vms.web.nics.0.ip": "fd00::1"},
        lines("vms.web.nics[0].ip: 'fd00::1' is an IPv6 address; only IPv4 is supported"),
    ),
    (
        "ip is network address",
        {"vms.web.count": 1, "vms.web.nics.0.ip": "10.77.0.0"},
        lines("vms.web.nics[0].ip: 10.77.0.0 is the network address of network lab (10.77.0.0/24)"),
    ),
    (
        "ip is gateway",
        {"vms.web.count": 1, "vms.web.nics.0.ip": "10.77.0.1"},
        lines("vms.web.nics[0].ip: 10.77.0.1 is the gateway of network lab (10.77.0.0/24)"),
    ),
    (
        "ip is host on isolated",
        {
            "hosts.node-a.networks.iso": {"mode": "isolated", "cidr": "10.79.0.0/24"},
            "vms.web.count": 1,
            "vms.web.nics.0": {"network": "iso", "ip": "10.79.0.1"},
        },
        lines("vms.web.nics[0].ip: 10.79.0.1 is the host's address of network iso (10.79.0.0/24)"),
    ),
    (
        "ip is broadcast",
        {
            "vms.web.count": 1,
            "vms.web.nics.0.ip": "10.77.0.255",
            "hosts.node-a.networks.lab.dhcp": False,
            "hosts.node-b.networks.lab.dhcp": False,
        },
        lines("vms.web.nics[0].ip: 10.77.0.255 is the broadcast address of network lab (10.77.0.0/24)"),
    ),
    (
        "count covers gateway",
        {"vms.web.nics.0.ip": "10.77.0.0"},
        lines("vms.web.nics[0].ip: 10.77.0.0 is the network address of network lab (10.77.0.0/24)"),
    ),
    (
        "count starts at gateway",
        {"vms.web.nics.0.ip": "10.77.0.1"},
        lines("vms.web.nics[0].ip: 10.77.0.1 is the gateway of network lab (10.77.0.0/24)"),
    ),
    (
        "count covers bridge gateway",
        {
            "hosts.node-a.networks.lan": {
                "mode": "bridge",
                "bridge": "br0",
                "cidr": "192.168.1.0/24",
                "gateway": "192.168.1.100",
            },
            "vms.web.host": "node-a",
            "vms.web.nics.0": {"network": "lan", "ip": "192.168.1.98"},
        },
        lines(
            "vms.web.nics[0].ip: addresses 192.168.1.98–192.168.1.100 (count 3) include 192.168.1.100, the gateway of "
            "network lan (192.168.1.0/24)"
        ),
    ),
    (
        "ip in dhcp range",
        {"vms.web.count": 1, "vms.web.nics.0.ip": "10.77.0.200"},
        lines(
            "vms.web.nics[0].ip: 10.77.0.200 is inside the DHCP range of network lab (10.77.0.128–10.77.0.254)"
        ),
    ),
    (
        "count runs into dhcp",
        {"vms.web.count": 10, "vms.web.nics.0.ip": "10.77.0.120"},
        lines(
            "vms.web.nics[0].ip: addresses 10.77.0.120–10.77.0.129 (count 10) overlap the DHCP range of network lab "
            "(10.77.0.128–10.77.0.254)"
        ),
    ),
    (
        "count runs past subnet",
        {
            "vms.web.count": 10,
            "vms.web.nics.0.ip": "10.77.0.250",
            "hosts.node-a.networks.lab.dhcp": False,
            "hosts.node-b.networks.lab.dhcp": False,
        },
        lines(
            "vms.web.nics[0].ip: with count 10, addresses 10.77.0.250–10.77.1.3 run past network lab (10.77.0.0/24)"
        ),
    ),
    (
        "count runs past ipv4 space",
        {
            "hosts.node-a.networks.lab.cidr": "255.255.255.0/24",
            "hosts.node-b.networks.lab.cidr": "255.255.255.0/24",
            "hosts.node-a.networks.lab.dhcp": False,
            "hosts.node-b.networks.lab.dhcp": False,
            "vms.web.count": 5,
            "vms.web.nics.0.ip": "255.255.255.253",
        },
        lines(
            "vms.web.nics[0].ip: with count 5, addresses 255.255.255.253–… run past network lab (255.255.255.0/24)"
        ),
    ),
    (
        "static ip on bridge without cidr",
        {
            "hosts.node-a.networks.lan": {"mode": "bridge", "bridge": "br0"},
            "vms.web.host": "node-a",
            "vms.web.nics.0": {"network": "lan", "ip": "192.168.1.10"},
        },
        lines("vms.web.nics[0].ip: network lan has no cidr; set one on the network to use static addresses"),
    ),
    (
        "duplicate ip",
        {
            "vms.api": {
                "image": "debian-12",
                "vcpus": 1,
                "memory": "1GiB",
                "disk": "1GiB",
                "nics": [{"network": "lab", "ip": "10.77.0.11"}],
            }
        },
        lines("vms.api.nics[0].ip: 10.77.0.11 on network lab is used by both web-2 and api"),
    ),
    (
        "overlapping ranges",
        {
            "vms.api": {
                "count": 5,
                "image": "debian-12",
                "vcpus": 1,
                "memory": "1GiB",
                "disk": "1GiB",
                "nics": [{"network": "lab", "ip": "10.77.0.8"}],
            }
        },
        lines(
            "vms.api.nics[0].ip: 10.77.0.10 on network lab is used by both web and api-3 "
            "(and 2 more addresses shared with vms.web)"
        ),
    ),
    (
        "duplicate ip within one vm",
        {"vms.web.count": 1, "vms.web.nics.1": {"network": "lab", "ip": "10.77.0.10"}},
        lines("vms.web.nics[1].ip: 10.77.0.10 on network lab is used by another NIC of web too"),
    ),
    (
        "duplicate ip between nics of a group",
        {"vms.web.nics.1": {"network": "lab", "ip": "10.77.0.11"}},
        lines(
            "vms.web.nics[0].ip: 10.77.0.11 on network lab is used by both web and web-2 "
            "(and 1 more address shared with vms.web)"
        ),
    ),
    (
        "mac with count",
        {"vms.web.nics.0.mac": "52:54:00:00:00:01"},
        lines("vms.web.nics[0].mac: cannot be set when count > 1 (each instance needs its own MAC)"),
    ),
    (
        "mac invalid",
        {"vms.web.count": 1, "vms.web.nics.0.mac": "52:54:00:00:00"},
        lines("vms.web.nics[0].mac: invalid MAC address '52:54:00:00:00' (expected e.g. 52:54:00:12:34:56)"),
    ),
    (
        "mac multicast",
        {"vms.web.count": 1, "vms.web.nics.0.mac": "01:00:5e:00:00:01"},
        lines("vms.web.nics[0].mac: 01:00:5e:00:00:01 is a multicast address; a NIC needs a unicast one"),
    ),
    (
        "mac number",
        {"vms.web.count": 1, "vms.web.nics.0.mac": 123456},
        lines('vms.web.nics[0].mac: must be a quoted string like "52:54:00:12:34:56"'),
    ),
    # --- references
    (
        "unknown image",
        {"vms.web.image": "debian-13"},
        lines("vms.web.image: unknown image 'debian-13' (did you mean 'debian-12'?)"),
    ),
    (
        "unknown image, none defined",
        {"images": DELETE},
        lines("vms.web.image: unknown image 'debian-12' (no images are defined)"),
    ),
    (
        "unknown host",
        {"vms.web.host": "node-z"},
        lines("vms.web.host: unknown host 'node-z' (did you mean 'node-b'?)"),
    ),
    (
        "pinned host lacks network",
        {"hosts.node-b.networks": {}, "vms.web.host": "node-b"},
        lines("vms.web.nics[0].network: host node-b has no network 'lab' (no networks are defined)"),
    ),
    (
        "pinned host lacks pool",
        {"vms.web.host": "node-b", "vms.web.pool": "fast"},
        lines("vms.web.pool: host node-b has no pool 'fast' (defined: vms)"),
    ),
    (
        "pinned host has several pools",
        {"hosts.node-b.pools.fast": {"path": "/srv/fast"}, "vms.web.host": "node-b"},
        lines("vms.web.pool: required because host node-b has several pools (vms, fast)"),
    ),
    (
        "unknown network",
        {"vms.web.nics.0.network": "labb"},
        lines("vms.web.nics[0].network: unknown network 'labb' (did you mean 'lab'?) on any host"),
    ),
    (
        "unknown pool",
        {"vms.web.pool": "zzz"},
        lines("vms.web.pool: unknown pool 'zzz' (defined: vms) on any host"),
    ),
    (
        "no host offers both",
        {
            "hosts.node-a.networks.iso": {"mode": "isolated", "cidr": "10.79.0.0/24"},
            "hosts.node-b.pools": {"fast": {"path": "/srv/fast"}},
            "vms.web.pool": "fast",
            "vms.web.nics.1": {"network": "iso"},
        },
        lines(
            "vms.web: no host offers network lab, network iso, pool fast together "
            "(node-a lacks pool fast; node-b lacks network iso)"
        ),
    ),
    (
        "no single-pool host",
        {"hosts.node-a.pools.fast": {"path": "/srv/fast"}, "hosts.node-b.pools.fast": {"path": "/srv/fast"}},
        lines(
            "vms.web: no host offers network lab, a single pool (pool is not set) together "
            "(node-a lacks a single pool (it has 2; set pool); node-b lacks a single pool (it has 2; set pool))"
        ),
    ),
    (
        "name clash after count",
        {"vms.web-2": {"image": "debian-12", "vcpus": 1, "memory": "1GiB", "disk": "1GiB"}},
        lines("vms.web-2: VM name web-2 is used by both vms.web and vms.web-2"),
    ),
    (
        "data disk volume clashes with a root disk",
        {
            "vms.web.data_disks": [{"name": "1-root", "size": "1GiB"}],
            "vms.web.count": 1,
            "vms.web-1": {"image": "debian-12", "vcpus": 1, "memory": "1GiB", "disk": "1GiB"},
        },
        lines(
            "vms.web.data_disks[0].name: volume name web-1-root would clash with the root disk of web-1; rename the data disk"
        ),
    ),
    (
        "data disk volumes clash",
        {
            "vms.a": {
                "image": "debian-12",
                "vcpus": 1,
                "memory": "1GiB",
                "disk": "1GiB",
                "data_disks": [{"name": "b-x", "size": 1}],
            },
            "vms.a-b": {
                "image": "debian-12",
                "vcpus": 1,
                "memory": "1GiB",
                "disk": "1GiB",
                "data_disks": [{"name": "x", "size": 1}],
            },
        },
        lines(
            "vms.a-b.data_disks[0].name: volume name a-b-x would clash with data disk b-x of a; rename the data disk"
        ),
    ),
    # --- cloud-init
    (
        "cloud_init and user_data",
        {"vms.web.user_data": "#cloud-config\n"},
        lines("vms.web: set either cloud_init or user_data, not both"),
    ),
    (
        "user data without header",
        {"vms.web.cloud_init": DELETE, "vms.web.user_data": "packages: [git]"},
        lines("vms.web.user_data: must start with a cloud-init header such as '#cloud-config' or '#!'"),
    ),
    (
        "user data not a string",
        {"vms.web.cloud_init": DELETE, "vms.web.user_data": {"packages": ["git"]}},
        lines("vms.web.user_data: must be a string"),
    ),
    (
        "hostname with count",
        {"vms.web.cloud_init.hostname": "www"},
        lines(
            "vms.web.cloud_init.hostname: cannot be set when count > 1 (each instance defaults to its own name)"
        ),
    ),
    (
        "bad hostname",
        {"vms.web.count": 1, "vms.web.cloud_init.hostname": "www.example.com"},
        lines(
            "vms.web.cloud_init.hostname: invalid hostname 'www.example.com' (one label: lowercase letters, digits, "
            "'-', at most 63)"
        ),
    ),
    (
        "bad domain",
        {"vms.web.cloud_init.domain": "-bad.example"},
        lines("vms.web.cloud_init.domain: invalid DNS domain '-bad.example' (e.g. lab.example.com)"),
    ),
    (
        "user twice",
        {"vms.web.cloud_init.users.1": {"name": "ops"}},
        lines("vms.web.cloud_init.users[1].name: user ops is listed twice"),
    ),
    (
        "bad user name",
        {"vms.web.cloud_init.users.0.name": "Ops"},
        lines(
            "vms.web.cloud_init.users[0].name: invalid user name 'Ops' (lowercase letters, digits, '_', '-'; "
            "at most 32)"
        ),
    ),
    (
        "private key",
        {"vms.web.cloud_init.users.0.ssh_authorized_keys": ["-----BEGIN OPENSSH PRIVATE KEY-----\nabc"]},
        lines(
            "vms.web.cloud_init.users[0].ssh_authorized_keys[0]: this is a private key; use the public key "
            "(the .pub file) instead"
        ),
    ),
    (
        "bad key",
        {"vms.web.cloud_init.users.0.ssh_authorized_keys": ["ssh-foo AAAA"]},
        lines(
            "vms.web.cloud_init.users[0].ssh_authorized_keys[0]: does not look like an OpenSSH public key "
            "(expected 'ssh-ed25519 AAAA… comment')"
        ),
    ),
    (
        "keys not a list",
        {"vms.web.cloud_init.users.0.ssh_authorized_keys": KEY},
        lines("vms.web.cloud_init.users[0].ssh_authorized_keys: must be a list"),
    ),
    (
        "empty password",
        {"vms.web.cloud_init.users.0.password": ""},
        lines("vms.web.cloud_init.users[0].password: must not be empty"),
    ),
    (
        "numeric password",
        {"vms.web.cloud_init.users.0.password": 1234},
        lines("vms.web.cloud_init.users[0].password: must be a string"),
    ),
    (
        "bad sudo",
        {"vms.web.cloud_init.users.0.sudo": 1},
        lines(
            "vms.web.cloud_init.users[0].sudo: must be true, false or a sudoers rule such as 'ALL=(ALL) NOPASSWD:ALL'"
        ),
    ),
    (
        "package with space",
        {"vms.web.cloud_init.packages": ["nginx git"]},
        lines("vms.web.cloud_init.packages[0]: invalid package name 'nginx git' (one package per entry)"),
    ),
    (
        "empty runcmd",
        {"vms.web.cloud_init.runcmd": [""]},
        lines(
            "vms.web.cloud_init.runcmd[0]: must be a non-empty shell command string or a list of argument strings"
        ),
    ),
    (
        "permissions int",
        {"vms.web.cloud_init.write_files": [{"path": "/etc/x", "permissions": 420}]},
        lines("vms.web.cloud_init.write_files[0].permissions: must be a quoted octal string like '0644'"),
    ),
    (
        "relative write path",
        {"vms.web.cloud_init.write_files": [{"path": "etc/x"}]},
        lines("vms.web.cloud_init.write_files[0].path: must be an absolute path (got 'etc/x')"),
    ),
    (
        "write path twice",
        {"vms.web.cloud_init.write_files": [{"path": "/etc/x"}, {"path": "/etc/x"}]},
        lines("vms.web.cloud_init.write_files[1].path: /etc/x is listed twice"),
    ),
    (
        "bad owner",
        {"vms.web.cloud_init.write_files": [{"path": "/etc/x", "owner": "ops:ops:ops"}]},
        lines(
            "vms.web.cloud_init.write_files[0].owner: invalid owner 'ops:ops:ops' (expected 'user' or 'user:group')"
        ),
    ),
    # --- data disks
    (
        "data disk root",
        {"vms.web.data_disks": [{"name": "root", "size": "1GiB"}]},
        lines("vms.web.data_disks[0].name: 'root' is reserved for the root disk"),
    ),
    (
        "data disk twice",
        {"vms.web.data_disks": [{"name": "d", "size": "1GiB"}, {"name": "d", "size": "2GiB"}]},
        lines("vms.web.data_disks[1].name: data disk d is listed twice"),
    ),
    (
        "data disk size",
        {"vms.web.data_disks": [{"name": "d", "size": 0}]},
        lines("vms.web.data_disks[0].size: must be greater than 0"),
    ),
    # --- shared objects, protection, trash
    (
        "pool without path",
        {"hosts.node-a.pools.vms.path": DELETE},
        lines("hosts.node-a.pools.vms.path: required (only an external pool may leave it out)"),
    ),
    (
        "non-external pool without path",
        {"hosts.node-a.pools.vms": {"external": False}},
        lines("hosts.node-a.pools.vms.path: required (only an external pool may leave it out)"),
    ),
    (
        "pool external not a bool",
        {"hosts.node-a.pools.vms.external": 1},
        lines("hosts.node-a.pools.vms.external: must be true or false"),
    ),
    (
        "network external not a bool",
        {"hosts.node-a.networks.lab.external": "true"},
        lines("hosts.node-a.networks.lab.external: must be true or false"),
    ),
    ("protect not a bool", {"vms.web.protect": "yes"}, lines("vms.web.protect: must be true or false")),
    ("trash days negative", {"trash_days": -1}, lines("trash_days: must be at least 0")),
    ("trash days too many", {"trash_days": 3651}, lines("trash_days: must be at most 3650")),
    ("trash days a string", {"trash_days": "7"}, lines("trash_days: must be an integer")),
    # --- several problems at once, in a stable order
    (
        "many at once",
        {
            "hosts.node-a.capacity.vcpus": 0,
            "vms.web.memory": "1MiB",
            "vms.web.image": "Bad",
            "vms.web.extra": 1,
        },
        lines(
            "hosts.node-a.capacity.vcpus: must be at least 1",
            "vms.web.image: invalid name 'Bad': must be lowercase",
            "vms.web.memory: must be at least 128 MiB (got 1 MiB)",
            "vms.web: unknown key 'extra'",
        ),
    ),
    (
        "many cross issues",
        {
            "vms.web.image": "nope",
            "vms.web.nics.0.ip": "10.1.1.1",
            "vms.web.host": "node-a",
            "vms.web.pool": "x",
        },
        lines(
            "vms.web.image: unknown image 'nope' (defined: debian-12)",
            "vms.web.pool: host node-a has no pool 'x' (defined: vms)",
            "vms.web.nics[0].ip: 10.1.1.1 is outside network lab (10.77.0.0/24)",
        ),
    ),
]


@pytest.mark.parametrize(
    ("patch", "expected"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid(patch: dict[str, Any], expected: list[str]) -> None:
    assert issues_of_patch(patch) == expected


def test_case_ids_are_unique() -> None:
    ids = [case[0] for case in INVALID] + [case[0] for case in VALID]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------- YAML-level input

BASE_YAML = yaml.safe_dump(BASE, sort_keys=False)

YAML_CASES: list[tuple[str, str, list[str]]] = [
    ("empty file", "", lines("hosts: required")),
    ("only a comment", "# nothing yet\n", lines("hosts: required")),
    (
        "top-level list",
        "- a\n- b\n",
        lines("the top level must be a mapping with hosts, images, vms and placement"),
    ),
    (
        "top-level scalar",
        "hello\n",
        lines("the top level must be a mapping with hosts, images, vms and placement"),
    ),
    (
        "syntax error",
        "hosts:\n  a: [1, 2\n",
        at("3:1: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence at line 2)"),
    ),
    (
        "bad indentation",
        "hosts:\n  a: 1\n b: 2\n",
        at("3:2: invalid YAML: did not find expected key (while parsing a block mapping at line 1)"),
    ),
    (
        "two documents",
        "hosts: {}\n---\nhosts: {}\n",
        at("2:1: but found another document (expected a single document in the stream at line 1)"),
    ),
    (
        "duplicate keys",
        BASE_YAML + "vms:\n  x: 1\nimages: {}\n",
        at(
            f"{BASE_YAML.count(chr(10)) + 1}:1: duplicate key 'vms' (first at line "
            f"{BASE_YAML.splitlines().index('vms:') + 1})",
            f"{BASE_YAML.count(chr(10)) + 3}:1: duplicate key 'images' (first at line "
            f"{BASE_YAML.splitlines().index('images:') + 1})",
        )
        + lines("vms.x: must be a mapping"),
    ),
    (
        "recursive alias",
        "hosts: &a\n  x: *a\n",
        at("1:8: an alias refers to its own ancestor"),
    ),
    (
        "billion laughs",
        "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
        ),
        at("6:36: the document has more than 1,000,000 values (counting what aliases stand for)"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_yaml_input(text: str, expected: list[str]) -> None:
    assert issues_of(text) == expected


# The YAML library words these itself (libyaml and pure-Python PyYAML differ),
# so only the part virtstack adds is checked exactly.
YAML_LIBRARY_ERRORS = [
    ("tab", "hosts:\n\ta: 1\n", "2:1: invalid YAML: found character"),
    (
        "python tag",
        "hosts: !!python/object:os.system {}\n",
        "1:8: unknown tag '!!python/object:os.system'",
    ),
    # libyaml refuses this itself (its own limit is 1,000 levels); other parsers: see test_yamldoc.
    ("deep nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n", "1:"),
]


@pytest.mark.parametrize(
    ("text", "prefix"), [c[1:] for c in YAML_LIBRARY_ERRORS], ids=[c[0] for c in YAML_LIBRARY_ERRORS]
)
def test_yaml_library_errors(text: str, prefix: str) -> None:
    [line] = issues_of(text)
    assert line.startswith(f"{F}:{prefix}")


def test_nesting_below_parser_limit_is_refused_at_the_65th_level_counting_the_top_mapping() -> None:
    # Within libyaml's own limit (1,000): virtstack's limit applies, at the first level too deep.
    issues = issues_of(BASE_YAML + "x-deep: " + "[" * 900 + "]" * 900 + "\n")
    assert issues == [
        f"{F}:{BASE_YAML.count(chr(10)) + 1}:{len('x-deep: ') + 64}: nested more than 64 levels deep"
    ]


UNQUOTED_MAC = """
hosts:
  a:
    uri: qemu:///system
    capacity: {vcpus: 1, memory: 1GiB, disk: 10GiB}
    pools: {vms: {path: /p}}
    networks: {lab: {mode: nat, cidr: 10.77.0.0/24}}
images: {d: {source: d.qcow2}}
vms:
  v:
    image: d
    vcpus: 1
    memory: 512MiB
    disk: 1GiB
    nics:
      - network: lab
        mac: 52:54:00:12:34:56
"""


def test_unquoted_mac_stays_a_string() -> None:
    # YAML 1.1 would read 52:54:00:12:34:56 as a base-60 integer.
    spec = parse_spec(UNQUOTED_MAC, F)
    assert spec.vms["v"].nics[0].mac == "52:54:00:12:34:56"


def test_anchors_and_merge_keys() -> None:
    text = """
x-small: &small {image: debian-12, vcpus: 1, memory: 512MiB, disk: 4GiB}
x-host: &host
  capacity: {vcpus: 4, memory: 8GiB, disk: 100GiB}
  pools: {vms: {path: /p}}
hosts:
  a: {<<: *host, uri: "qemu:///system"}
  b: {<<: *host, uri: "qemu+ssh://b/system"}
images: {debian-12: {source: d.qcow2}}
vms:
  one: {<<: *small}
  two: {<<: *small, vcpus: 2}
"""
    spec = parse_spec(text, F)
    assert spec.vms["two"].vcpus == 2
    assert spec.vms["one"].memory == 512 * 1024**2
    assert set(spec.hosts) == {"a", "b"}


def test_merged_keys_overridden_are_not_duplicates() -> None:
    text = BASE_YAML + "x-a: &a {vcpus: 1}\nx-b: &b {<<: *a, vcpus: 2}\nx-c: {<<: *b, vcpus: 3}\n"
    assert issues_of(text) == []


# ------------------------------------------------------------------ files


def test_load_spec_file_and_display_name(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("hosts: {}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: hosts: must have at least 1 entry"
    with pytest.raises(SpecError) as info:
        load_spec(str(path), display_name="stacks/x.yaml")
    assert str(info.value) == "stacks/x.yaml: hosts: must have at least 1 entry"
    assert info.value.issues == [SpecIssue("stacks/x.yaml", "hosts", "must have at least 1 entry")]


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml", display_name="stacks/nope.yaml")
    assert str(info.value) == "stacks/nope.yaml: cannot read the file: No such file or directory"


def test_load_spec_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path, display_name="d")
    assert str(info.value) == "d: cannot read the file: Is a directory"


def test_load_spec_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"hosts: \xff\n")
    with pytest.raises(SpecError) as info:
        load_spec(path, display_name="x.yaml")
    assert str(info.value) == "x.yaml: not UTF-8 text (bad byte at offset 7)"


def test_load_spec_bom(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE_YAML.encode())
    assert isinstance(load_spec(path), StackSpec)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.yaml")))
def test_fixture_files_are_valid(name: str) -> None:
    assert isinstance(load_spec(FIXTURES / name, display_name=name), StackSpec)


@pytest.mark.parametrize("name", ["dev.yaml", "lab.yaml"])
def test_example_stacks_are_valid(name: str) -> None:
    from virtstack.placement import place_fleet

    spec = load_spec(REPO / "stacks" / name, display_name=f"stacks/{name}")
    result = place_fleet(spec, f"stacks/{name}")
    assert len(result.placement.assignments) == len(result.fleet)


def test_dev_stack_shape() -> None:
    spec = load_spec(REPO / "stacks" / "dev.yaml")
    host = spec.hosts["local"]
    assert host.uri == "qemu:///system"
    assert host.domain_type == "auto"
    assert (host.capacity.vcpus, host.capacity.memory, host.capacity.disk) == (2, 3 * 1024**3, 40 * 1024**3)
    assert host.pools["vms"].path == "/var/lib/virtstack/pools/dev"
    net = host.networks["devnet"]
    assert (net.mode, str(net.cidr), net.dhcp_enabled) == ("nat", "10.151.0.0/24", True)
    assert spec.images["debian-12"].source == ".virtstack/images/debian-12.qcow2"
    app = spec.vms["app"]
    assert (app.count, app.vcpus, app.memory, app.disk) == (2, 1, 512 * 1024**2, 4 * 1024**3)
    assert [(d.name, d.size) for d in app.data_disks] == [("data", 1024**3)]
    assert str(app.nics[0].ip) == "10.151.0.10" and app.running
    assert app.cloud_init is not None and app.cloud_init.users[0].name == "ops"
    # Defaults of the fields dev.yaml leaves out.
    assert (spec.trash_days, app.protect, host.pools["vms"].external, net.external) == (
        7,
        False,
        False,
        False,
    )


# ---------------------------------------------------------------- secrets


def test_secrets_never_printed() -> None:
    doc = patched(
        {"vms.web.cloud_init.users.0.password": "hunter2-secret", "vms.web.extra": "x", "vms.web.vcpus": 0}
    )
    with pytest.raises(SpecError) as info:
        parse_spec(yaml.safe_dump(doc), F)
    assert "hunter2" not in str(info.value)
    spec = parse_spec(yaml.safe_dump(patched({"vms.web.cloud_init.users.0.password": "hunter2-secret"})), F)
    assert "hunter2" not in repr(spec) and "hunter2" not in str(spec)
    raw = patched(
        {"vms.web.cloud_init": DELETE, "vms.web.user_data": "#cloud-config\npassword: hunter2-secret\n"}
    )
    spec = parse_spec(yaml.safe_dump(raw), F)
    assert "hunter2" not in repr(spec)
    from virtstack.fleet import expand_fleet

    assert "hunter2" not in repr(expand_fleet(spec))


def test_bad_user_data_is_not_echoed() -> None:
    doc = patched({"vms.web.cloud_init": DELETE, "vms.web.user_data": "hunter2-secret"})
    message = "\n".join(issues_of(yaml.safe_dump(doc)))
    assert "hunter2" not in message and "user_data" in message


def test_format_loc() -> None:
    assert format_loc(["vms", "web", "nics", 0, "ip"]) == "vms.web.nics[0].ip"
    assert format_loc([]) == ""
    assert format_loc(["hosts", "a b"]) == "hosts['a b']"


# --------------------------------------------------------------- fuzzing

_paths: list[tuple[Any, ...]] = []


def _collect(node: Any, prefix: tuple[Any, ...]) -> None:
    _paths.append(prefix)
    if isinstance(node, dict):
        for k, v in node.items():
            _collect(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _collect(v, (*prefix, i))


_collect(BASE, ())

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["10.77.0.10", "lab", "debian-12", "node-a", "4GiB", "0", "x" * 70, "qemu:///system"]),
)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_paths), _values), min_size=1, max_size=3))
def test_fuzzed_documents_only_raise_spec_error(mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc: Any = copy.deepcopy(BASE)
    for path, value in mutations:
        if not path:
            doc = value
            continue
        target = doc
        try:
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        return
    try:
        parse_spec(text, F)
    except SpecError as error:
        assert error.issues and all(re.match(rf"{F}(:\d+:\d+)?: ", str(issue)) for issue in error.issues)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_spec_error(text: str) -> None:
    try:
        parse_spec(text, F)
    except SpecError as error:
        assert error.issues
