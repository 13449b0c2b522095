"""Typed props: what the components ask of each libvirt object, as the provider reads it — part of the
contract (virtstack.contract), kept in its own module for size. Libvirt-free and engine-free.

The dynamic provider's wire format (and so every stack's state) is a dict: `to_inputs()` writes exactly
the keys and values earlier versions wrote (optional keys absent, not null), `from_inputs()` reads that
dict — also as the engine hands it back, with numbers as floats. Values that are another resource's
output (a base volume's path, the secret user data) are carried as they are: `Deferred` marks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from virtstack.contract import DOMAIN, NETWORK, POOL, VOLUME

DEFAULT_SHUTDOWN_TIMEOUT = 60  # seconds (virtstack.spec.vmfeatures)

Deferred = Any  # a value, or the engine's Output of one while a component builds the props


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class Target:
    """Where an object lives and whose it is: the host's libvirt URI, its name, `project/stack`."""

    uri: str
    host: str
    owner: str

    @property
    def where(self) -> str:
        return self.host or self.uri


@dataclass(frozen=True)
class PoolProps:
    target: Target
    name: str
    path: str | None = None
    external: bool = False

    def to_inputs(self) -> dict[str, Any]:
        t = self.target
        return _present(
            uri=t.uri,
            host=t.host,
            owner=t.owner,
            name=self.name,
            path=self.path,
            external=self.external or None,
        )

    @classmethod
    def from_inputs(cls, props: Mapping[str, Any]) -> PoolProps:
        return cls(
            _target(props),
            str(props.get("name") or ""),
            props.get("path") or None,
            bool(props.get("external")),
        )


@dataclass(frozen=True)
class NetworkProps:
    target: Target
    name: str
    mode: str
    bridge: str | None = None
    external: bool = False
    cidr: str | None = None  # nat and isolated networks only
    dhcp: bool | None = None
    dhcp_start: str | None = None
    dhcp_end: str | None = None

    def to_inputs(self) -> dict[str, Any]:
        t = self.target
        return _present(
            uri=t.uri,
            host=t.host,
            owner=t.owner,
            name=self.name,
            mode=self.mode,
            external=self.external or None,
            bridge=self.bridge,
            cidr=self.cidr,
            dhcp=self.dhcp,
            dhcp_start=self.dhcp_start,
            dhcp_end=self.dhcp_end,
        )

    @classmethod
    def from_inputs(cls, props: Mapping[str, Any]) -> NetworkProps:
        return cls(
            _target(props),
            str(props.get("name") or ""),
            str(props.get("mode") or ""),
            props.get("bridge"),
            bool(props.get("external")),
            props.get("cidr"),
            props.get("dhcp"),
            props.get("dhcp_start"),
            props.get("dhcp_end"),
        )


VOLUME_ROLES = ("base", "root", "data", "seed")
DATA_ROLES = ("root", "data")  # the roles whose volumes hold a guest's data


@dataclass(frozen=True)
class VolumeProps:
    """Roles: `base` (an image uploaded once per host), `root` (copy-on-write over a base), `data`
    (an empty qcow2), `seed` (a cloud-init NoCloud ISO)."""

    target: Target
    pool: str
    name: str
    role: str
    format: str
    pool_external: bool = False
    vm: str | None = None
    size: int | None = None  # root and data disks, bytes (normalise_disk)
    backing_path: Deferred = None  # root: the base volume's path
    backing_format: str | None = None
    source: str | None = None  # base: the image file or URL, and its fingerprint
    source_fingerprint: str | None = None
    user_data: Deferred = None  # seed (a secret)
    meta_data: str | None = None
    network_config: str | None = None
    external: bool = False  # base: an existing shared image volume, used and never changed
    # root, `on_cloud_init_change: replace` only: the seed's instance-id; a new one recreates the disk
    cloud_init_instance: str | None = None

    @property
    def holds_data(self) -> bool:
        return self.role in DATA_ROLES

    def to_inputs(self) -> dict[str, Any]:
        t = self.target
        return _present(
            uri=t.uri,
            host=t.host,
            owner=t.owner,
            pool=self.pool,
            pool_external=self.pool_external or None,
            name=self.name,
            vm=self.vm,
            role=self.role,
            format=self.format,
            size=self.size,
            backing_path=self.backing_path,
            backing_format=self.backing_format,
            source=self.source,
            source_fingerprint=self.source_fingerprint,
            user_data=self.user_data,
            meta_data=self.meta_data,
            network_config=self.network_config,
            external=self.external or None,
            cloud_init_instance=self.cloud_init_instance,
        )

    @classmethod
    def from_inputs(cls, props: Mapping[str, Any]) -> VolumeProps:
        size = props.get("size")
        return cls(
            _target(props),
            str(props.get("pool") or ""),
            str(props.get("name") or ""),
            str(props.get("role") or ""),
            str(props.get("format") or "qcow2"),
            bool(props.get("pool_external")),
            props.get("vm") or None,
            _int(size) if size is not None else None,
            props.get("backing_path") or None,
            props.get("backing_format"),
            props.get("source"),
            props.get("source_fingerprint"),
            props.get("user_data"),
            props.get("meta_data"),
            props.get("network_config"),
            bool(props.get("external")),
            props.get("cloud_init_instance") or None,
        )


@dataclass(frozen=True)
class DiskRef:
    """A domain's disk: a volume by pool and name; `generation` (a volume output) changes when the
    volume is replaced under the same name, so the domain is redefined onto the new file."""

    pool: str
    volume: Deferred
    device: str  # disk | cdrom
    format: str
    generation: Deferred = None

    def to_inputs(self) -> dict[str, Any]:
        disk = {"pool": self.pool, "volume": self.volume, "generation": self.generation}
        if self.generation is None:
            del disk["generation"]
        return {**disk, "device": self.device, "format": self.format}

    @classmethod
    def from_inputs(cls, disk: Mapping[str, Any]) -> DiskRef:
        return cls(
            str(disk.get("pool") or ""),
            disk.get("volume"),
            str(disk.get("device") or "disk"),
            str(disk.get("format") or "qcow2"),
            disk.get("generation"),
        )


def disk_identities(disks: Any) -> set[tuple[str, str]]:
    """A domain's disks as (pool, volume): what the provider's read and drift compare, so that what
    libvirt adds to a disk (driver, target, address) never counts as a change."""
    if not isinstance(disks, list | tuple):
        return set()
    refs = (DiskRef.from_inputs(d) for d in disks if isinstance(d, Mapping))
    return {(ref.pool, str(ref.volume)) for ref in refs}


def nic_identities(nics: Any) -> set[tuple[str, str]]:
    """A domain's network interfaces as (network, MAC), compared like its disks."""
    if not isinstance(nics, list | tuple):
        return set()
    return {(str(n.get("network")), str(n.get("mac"))) for n in nics if isinstance(n, Mapping)}


@dataclass(frozen=True)
class NicRef:
    network: str
    mac: str

    def to_inputs(self) -> dict[str, Any]:
        return {"network": self.network, "mac": self.mac}


@dataclass(frozen=True)
class DomainProps:
    target: Target
    name: str
    domain_type: str  # kvm | qemu
    cpu_mode: str  # "" for libvirt's default
    tb_cache_mib: int  # TCG only; 0 for kvm
    vcpus: int
    memory: int  # bytes, whole MiB (normalise_memory)
    disks: tuple[DiskRef, ...]
    nics: tuple[NicRef, ...]
    running: bool
    autostart: bool
    console_log: str
    # An imported domain (virtstack import): "" for virtstack's own, "unowned" adopted without an owner
    # record (destroy leaves it), "owned" once the user confirmed (the record is written, no restart).
    adopt: str = ""
    boot_concurrency: int = 0  # a hint for starting, never compared (contract.HINT_KEYS)
    # VM features (issue 17). Optional on the wire: absent when at their default, so state written
    # before them reads the same and shows no diff.
    firmware: str = "bios"  # bios | uefi | uefi-secure
    tpm: bool = False
    cpu_model: str = ""  # cpu_mode "custom" only
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT
    cloud_init_change: str = "reseed"  # reseed | replace | ignore
    seed_instance_id: str | None = None  # the cloud-init instance-id of the attached seed

    def features(self) -> dict[str, Any]:
        """The feature keys that differ from their defaults, as the wire format holds them."""
        return _present(
            firmware=None if self.firmware == "bios" else self.firmware,
            tpm=self.tpm or None,
            cpu_model=self.cpu_model or None,
            shutdown_timeout=(
                None if self.shutdown_timeout == DEFAULT_SHUTDOWN_TIMEOUT else self.shutdown_timeout
            ),
            cloud_init_change=None if self.cloud_init_change == "reseed" else self.cloud_init_change,
            seed_instance_id=self.seed_instance_id,
        )

    def to_inputs(self) -> dict[str, Any]:
        t = self.target
        extra = {"adopt": self.adopt} if self.adopt else {}
        inputs = {
            **extra,
            "uri": t.uri,
            "host": t.host,
            "owner": t.owner,
            "name": self.name,
            "domain_type": self.domain_type,
            "cpu_mode": self.cpu_mode,
            "tb_cache_mib": self.tb_cache_mib,
            "vcpus": self.vcpus,
            "memory": self.memory,
            "disks": [d.to_inputs() for d in self.disks],
            "nics": [n.to_inputs() for n in self.nics],
            "running": self.running,
            "autostart": self.autostart,
            "console_log": self.console_log,
            **self.features(),
        }
        if self.boot_concurrency:  # optional: absent by default, as in state written before it existed
            inputs["boot_concurrency"] = self.boot_concurrency
        return inputs

    @classmethod
    def from_inputs(cls, props: Mapping[str, Any]) -> DomainProps:
        return cls(
            _target(props),
            str(props.get("name") or ""),
            str(props.get("domain_type") or "kvm"),
            str(props.get("cpu_mode") or ""),
            _int(props.get("tb_cache_mib")),
            _int(props.get("vcpus")),
            _int(props.get("memory")),
            tuple(DiskRef.from_inputs(d) for d in props.get("disks") or ()),
            tuple(NicRef(str(n.get("network")), str(n.get("mac"))) for n in props.get("nics") or ()),
            bool(props.get("running", True)),
            bool(props.get("autostart")),
            str(props.get("console_log") or ""),
            str(props.get("adopt") or ""),
            _int(props.get("boot_concurrency")),
            str(props.get("firmware") or "bios"),
            bool(props.get("tpm")),
            str(props.get("cpu_model") or ""),
            _int(props["shutdown_timeout"]) if "shutdown_timeout" in props else DEFAULT_SHUTDOWN_TIMEOUT,
            str(props.get("cloud_init_change") or "reseed"),
            props.get("seed_instance_id") or None,
        )


def _target(props: Mapping[str, Any]) -> Target:
    return Target(str(props.get("uri") or ""), str(props.get("host") or ""), str(props.get("owner") or ""))


Props = PoolProps | NetworkProps | VolumeProps | DomainProps
PROPS_BY_KIND: dict[str, type[PoolProps] | type[NetworkProps] | type[VolumeProps] | type[DomainProps]] = {
    POOL: PoolProps,
    NETWORK: NetworkProps,
    VOLUME: VolumeProps,
    DOMAIN: DomainProps,
}
