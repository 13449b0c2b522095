"""The stack file's models (see virtstack.spec for the shape decisions); no I/O, no libvirt."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from virtstack.contract import DEFAULT_TRASH_DAYS
from virtstack.netaddr import gateway_address, host_address
from virtstack.spec.guest import (
    Owner,
    Package,
    PasswordEnv,
    Permissions,
    RunCmd,
    SecretFile,
    SshKey,
    Sudo,
    Username,
    check_password_hash,
    nonempty_secret,
)
from virtstack.spec.scalars import (
    COMPRESSED_SUFFIXES,
    MAX_COUNT,
    URL_SCHEME_RE,
    AbsPath,
    BridgeName,
    Cidr,
    DiskSize,
    Domain,
    Hostname,
    ImageSource,
    IPv4,
    Loc,
    Mac,
    Memory,
    Name,
    PositiveInt,
    PositiveSize,
    Sha256,
    StrictBool,
    detect_image_format,
    issues_error,
    source_path,
)
from virtstack.spec.uri import LibvirtUri, uri_transport_is_plain
from virtstack.spec.vmfeatures import (
    DEFAULT_CLOUD_INIT_CHANGE,
    DEFAULT_FIRMWARE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    CloudInitChange,
    CpuSpec,
    Firmware,
    ShutdownTimeout,
)

# ---------------------------------------------------------------------- models


class _Model(BaseModel):
    # frozen: a validated spec is shared by expansion, placement and rendering;
    # nobody should patch it in place.  hide_input_in_errors: secrets stay out
    # of pydantic's own messages too.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Capacity(_Model):
    """What virtstack may allocate on a host (not the host's physical size)."""

    vcpus: PositiveInt
    memory: PositiveSize
    disk: PositiveSize


class Overcommit(_Model):
    """How far placement may allocate past a host's capacity: effective = capacity x factor.

    vCPUs are often overcommitted (idle guests share cores); memory rarely.  Disk is never
    overcommitted (virtual sizes are counted, see virtstack.placement)."""

    vcpus: Annotated[float, Field(strict=True, ge=1, le=64)] = 1.0
    memory: Annotated[float, Field(strict=True, ge=1, le=64)] = 1.0


HostStatus = Literal["active", "cordoned", "drained"]


class PoolSpec(_Model):
    """A directory storage pool; ``path`` is on the host.

    ``external: true``: a pool that already exists and that others share (another stack, a person).
    virtstack checks it exists (and has ``path``, when given) and puts its volumes there under names
    that carry the stack's name, but never creates, changes or deletes the pool itself."""

    path: AbsPath | None = None
    external: StrictBool = False

    @model_validator(mode="after")
    def _check_path(self) -> PoolSpec:
        if self.path is None and not self.external:
            raise issues_error([(("path",), "required (only an external pool may leave it out)")])
        return self


class NetworkSpec(_Model):
    """A libvirt network on one host.

    Networks of the same name on several hosts may differ (mode, cidr, dhcp): each host's is a
    segment of its own, and static addresses are checked against the segment of the host a VM is
    placed on (virtstack.validate, virtstack.placement).
    """

    mode: Literal["nat", "isolated", "bridge"]
    # An existing network that others share: checked to exist and match, never created, changed or
    # deleted by virtstack.
    external: StrictBool = False
    cidr: Cidr | None = None
    dhcp: StrictBool | None = None
    bridge: BridgeName | None = None
    gateway: IPv4 | None = None

    @property
    def dhcp_enabled(self) -> bool:
        """Whether libvirt serves DHCP on this network (default: not for bridges)."""
        if self.dhcp is None:
            return self.mode != "bridge"
        return self.dhcp

    @property
    def gateway_address(self) -> IPv4Address | None:
        """The router guests use (virtstack.netaddr.gateway_address)."""
        return gateway_address(self.mode, self.cidr, self.gateway)

    @property
    def host_address(self) -> IPv4Address | None:
        """The address libvirt gives the host on nat/isolated networks (.1)."""
        return host_address(self.mode, self.cidr)

    @model_validator(mode="after")
    def _check_mode(self) -> NetworkSpec:
        issues: list[tuple[Loc, str]] = []
        if self.mode in ("nat", "isolated"):
            if self.cidr is None:
                issues.append((("cidr",), f"required for {self.mode} networks"))
            if self.bridge is not None:
                issues.append((("bridge",), "only allowed when mode is bridge"))
            if self.gateway is not None:
                issues.append(
                    (
                        ("gateway",),
                        f"only allowed for bridge networks ({self.mode} networks use the .1 address)",
                    )
                )
        else:
            if self.bridge is None:
                issues.append(
                    (("bridge",), "required for bridge networks: an existing host bridge, e.g. br0")
                )
            if self.dhcp:
                issues.append(
                    (
                        ("dhcp",),
                        "must be false for bridge networks: libvirt serves no DHCP on a host bridge "
                        "(NICs without ip still use the LAN's DHCP server)",
                    )
                )
            if self.gateway is not None:
                if self.cidr is None:
                    issues.append((("gateway",), "needs cidr to be set"))
                elif self.gateway not in self.cidr or self.gateway in (
                    self.cidr.network_address,
                    self.cidr.broadcast_address,
                ):
                    issues.append((("gateway",), f"{self.gateway} is not a host address of {self.cidr}"))
        if issues:
            raise issues_error(issues)
        return self


class HostSpec(_Model):
    """A libvirt host virtstack may use."""

    uri: LibvirtUri
    # "auto" is kept literally: the caller resolves it from what setup detected.
    domain_type: Literal["auto", "kvm", "qemu"] = "auto"
    capacity: Capacity
    # Placement allocates up to capacity x overcommit (virtstack.placement).
    overcommit: Overcommit = Field(default_factory=Overcommit)
    # cordoned: takes no new VM; drained: takes none and its VMs are placed elsewhere.
    state: HostStatus = "active"
    pools: Annotated[dict[Name, PoolSpec], Field(min_length=1)]
    networks: dict[Name, NetworkSpec] = Field(default_factory=dict)
    # qemu+tcp sends everything, seed ISOs with their passwords included, in clear: only on request.
    insecure_transport: StrictBool = False
    # Domains started at once on this host; the next start when one of them answers its guest agent
    # (or BOOT_TIMEOUT passes). None: from the host's CPUs and domain type (virtstack.boot).
    boot_concurrency: PositiveInt | None = None
    # Which Pulumi provider manages this host's libvirt objects: virtstack's own (`native`) or the
    # pulumi-libvirt 0.5.4 interface (`pulumi-libvirt`, components/pulumi_libvirt.py).
    backend: Literal["native", "pulumi-libvirt"] = "native"
    # The CPU of this host's VMs that set none (virtstack.spec.vmfeatures).
    cpu: CpuSpec | None = None

    @model_validator(mode="after")
    def _check_transport(self) -> HostSpec:
        if uri_transport_is_plain(self.uri) and not self.insecure_transport:
            raise issues_error(
                [
                    (
                        ("uri",),
                        "qemu+tcp is unencrypted and unauthenticated (seed ISOs carry passwords): use "
                        "qemu+ssh or qemu+tls, or set insecure_transport: true on a trusted network",
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _check_backend(self) -> HostSpec:
        # pulumi-libvirt creates what it manages; shared (external) pools and networks are native only.
        if self.backend != "pulumi-libvirt":
            return self
        issues: list[tuple[Loc, str]] = [
            ((kind, name, "external"), "external is not supported with backend: pulumi-libvirt")
            for kind, items in (("pools", self.pools), ("networks", self.networks))
            for name, item in items.items()
            if item.external
        ]
        if issues:
            raise issues_error(issues)
        return self


class ImageSpec(_Model):
    """A base image, uploaded to each host that runs a VM using it.

    ``external: true``: an image volume that already exists in the pool of every host that runs a VM
    using it (shared by several stacks or kept by a person); ``source`` is then that volume's name.
    virtstack checks it is there and never uploads, changes or deletes it."""

    source: ImageSource
    format: Literal["qcow2", "raw"] | None = None
    # Required for https sources: the download is verified against it before any host sees it.
    sha256: Sha256 | None = None
    external: StrictBool = False

    @property
    def is_url(self) -> bool:
        return not self.external and URL_SCHEME_RE.match(self.source) is not None

    @property
    def disk_format(self) -> Literal["qcow2", "raw"]:
        """``format``, or the one implied by the source's extension."""
        if self.format is not None:
            return self.format
        detected = detect_image_format(self.source)
        if detected is None:  # pragma: no cover - the validator rejects this case
            raise ValueError(f"cannot detect the format of {self.source!r}")
        return detected

    @model_validator(mode="after")
    def _check_format(self) -> ImageSpec:
        if self.external:
            problems: list[tuple[Loc, str]] = []
            if "/" in self.source or URL_SCHEME_RE.match(self.source):
                problems.append(
                    (("source",), "an external image is a volume name in the pool, not a path or URL")
                )
            if self.sha256 is not None:
                problems.append((("sha256",), "only for https sources (an external image is not downloaded)"))
            if problems:
                raise issues_error(problems)
        lowered = source_path(self.source).lower()
        if lowered.endswith(COMPRESSED_SUFFIXES):
            raise issues_error([(("source",), "compressed images are not supported; decompress it first")])
        if self.is_url and self.sha256 is None:
            raise issues_error(
                [
                    (
                        ("sha256",),
                        "required for https sources: the image's SHA-256 (64 hex digits, from sha256sum)",
                    )
                ]
            )
        if not self.is_url and self.sha256 is not None:
            raise issues_error([(("sha256",), "only for https sources (local images are not downloaded)")])
        if self.format is None and detect_image_format(self.source) is None:
            raise issues_error(
                [
                    (
                        ("format",),
                        "required: the format cannot be told from the file name "
                        "(.qcow2 means qcow2, .raw means raw); set qcow2 or raw",
                    )
                ]
            )
        return self


class DataDiskSpec(_Model):
    """An extra empty disk (a pool volume named after the VM and this name)."""

    name: Name
    size: DiskSize

    @field_validator("name")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == "root":
            raise ValueError("'root' is reserved for the root disk")
        return value


class NicSpec(_Model):
    """A network interface; no ``ip`` means DHCP, no ``mac`` means derived."""

    network: Name
    ip: IPv4 | None = None
    mac: Mac | None = None


# crypt(3) hashes cloud-init's hashed_passwd accepts: yescrypt, sha512, sha256, bcrypt.


class UserSpec(_Model):
    """A cloud-init user (see virtstack.cloudinit for how it is rendered).

    At most one password source: ``password`` (plain, in the stack file), ``password_hash`` (a
    crypt hash), ``password_env`` (a VIRTSTACK_PASSWORD_* variable) or ``password_file`` (a file in
    the secrets directory, see virtstack.edge.resolve_passwords), so stack files need hold none.
    """

    name: Username
    ssh_authorized_keys: list[SshKey] = Field(default_factory=list)
    password: SecretStr | None = None
    password_hash: SecretStr | None = None
    password_env: PasswordEnv | None = None
    password_file: SecretFile | None = None
    sudo: Sudo = None
    groups: list[Username] = Field(default_factory=list)
    shell: AbsPath = "/bin/bash"

    @field_validator("password")
    @classmethod
    def _check_password(cls, value: SecretStr | None) -> SecretStr | None:
        return nonempty_secret(value)

    @field_validator("password_hash")
    @classmethod
    def _check_hash(cls, value: SecretStr | None) -> SecretStr | None:
        return check_password_hash(value)

    @model_validator(mode="after")
    def _one_password(self) -> UserSpec:
        given = [
            key
            for key in ("password", "password_hash", "password_env", "password_file")
            if getattr(self, key) is not None
        ]
        if len(given) > 1:
            raise issues_error([((given[1],), f"set only one of {', '.join(given)}")])
        return self


class WriteFileSpec(_Model):
    """A file cloud-init writes; ``defer`` writes it after users exist."""

    path: AbsPath
    content: str = ""
    permissions: Permissions | None = None
    owner: Owner | None = None
    defer: StrictBool = False


class CloudInitSpec(_Model):
    """Structured cloud-config; hostname defaults to the VM instance name."""

    hostname: Hostname | None = None
    domain: Domain | None = None
    users: list[UserSpec] = Field(default_factory=list)
    packages: list[Package] = Field(default_factory=list)
    runcmd: list[RunCmd] = Field(default_factory=list)
    write_files: list[WriteFileSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_unique(self) -> CloudInitSpec:
        issues: list[tuple[Loc, str]] = []
        seen_users: set[str] = set()
        for i, user in enumerate(self.users):
            if user.name in seen_users:
                issues.append((("users", i, "name"), f"user {user.name} is listed twice"))
            seen_users.add(user.name)
        seen_paths: set[str] = set()
        for i, item in enumerate(self.write_files):
            if item.path in seen_paths:
                issues.append((("write_files", i, "path"), f"{item.path} is listed twice"))
            seen_paths.add(item.path)
        if issues:
            raise issues_error(issues)
        return self


_USER_DATA_HEADERS = (
    "#cloud-config",
    "#!",
    "#include",
    "#cloud-boothook",
    "#part-handler",
    "#cloud-config-archive",
    "## template: jinja",
    "content-type:",
    "mime-version:",
)


# A volume's name in its pool (as libvirt lists it), e.g. `legacy-root.qcow2`.
VolumeName = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._@+-]{0,254}$")]


class ImportedDiskSpec(_Model):
    """A disk of an imported domain: an existing volume, used as it is (never created or deleted)."""

    pool: Name
    volume: VolumeName
    format: Literal["qcow2", "raw"] = "qcow2"


class ImportedSpec(_Model):
    """A domain that existed before the stack (`virtstack import`): adopted as it is, never
    restarted by the adoption.  ``owned``: the user confirmed it becomes this stack's (its owner
    record is written); until then `destroy` leaves it in place."""

    disks: list[ImportedDiskSpec] = Field(default_factory=list)
    owned: StrictBool = False


class VmSpec(_Model):
    """A group of ``count`` identical VMs (see virtstack.fleet for expansion)."""

    count: Annotated[int, Field(strict=True, ge=1, le=MAX_COUNT)] = 1
    # Required unless ``imported`` (an imported VM's disks are existing volumes).
    image: Name | None = None
    pool: Name | None = None
    vcpus: PositiveInt
    memory: Memory
    disk: DiskSize | None = None
    data_disks: list[DataDiskSpec] = Field(default_factory=list)
    nics: list[NicSpec] = Field(default_factory=list)
    cloud_init: CloudInitSpec | None = None
    user_data: SecretStr | None = None
    host: Name | None = None
    # Instances on distinct hosts: required (an error when impossible) or preferred (as spread as
    # capacity allows); see virtstack.placement.
    anti_affinity: Literal["required", "preferred"] | None = None
    imported: ImportedSpec | None = None
    running: StrictBool = True
    autostart: StrictBool = False
    # Pulumi's protect: nothing deletes this VM or its disks, not even --allow-data-loss, until the
    # flag is removed (and applied) again.
    protect: StrictBool = False
    # VM features (virtstack.spec.vmfeatures): firmware and TPM, the CPU (else the host's `cpu`), how
    # long an ACPI shutdown may take before a change forces the VM off, what a cloud-init change does.
    firmware: Firmware = DEFAULT_FIRMWARE
    tpm: StrictBool = False
    cpu: CpuSpec | None = None
    shutdown_timeout: ShutdownTimeout = DEFAULT_SHUTDOWN_TIMEOUT
    on_cloud_init_change: CloudInitChange = DEFAULT_CLOUD_INIT_CHANGE

    @field_validator("user_data")
    @classmethod
    def _check_user_data(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        if not value.get_secret_value().lstrip().lower().startswith(_USER_DATA_HEADERS):
            # cloud-init silently ignores user data it cannot classify.
            raise ValueError("must start with a cloud-init header such as '#cloud-config' or '#!'")
        return value

    @model_validator(mode="after")
    def _check_group(self) -> VmSpec:
        issues: list[tuple[Loc, str]] = []
        if self.imported is None:
            for key in ("image", "disk"):
                if getattr(self, key) is None:
                    issues.append(((key,), "required"))
        else:
            for key in ("image", "disk", "cloud_init", "user_data", "pool"):
                if getattr(self, key) is not None:
                    issues.append(((key,), "not for an imported VM (its disks are imported.disks)"))
            if self.data_disks:
                issues.append((("data_disks",), "not for an imported VM (its disks are imported.disks)"))
            if self.count != 1:
                issues.append((("count",), "an imported VM is one domain: count must be 1"))
            if self.host is None:
                issues.append((("host",), "required for an imported VM: the host its domain is on"))
        if self.cloud_init is not None and self.user_data is not None:
            issues.append(((), "set either cloud_init or user_data, not both"))
        if self.count > 1:
            for i, nic in enumerate(self.nics):
                if nic.mac is not None:
                    issues.append(
                        (("nics", i, "mac"), "cannot be set when count > 1 (each instance needs its own MAC)")
                    )
            if self.cloud_init is not None and self.cloud_init.hostname is not None:
                issues.append(
                    (
                        ("cloud_init", "hostname"),
                        "cannot be set when count > 1 (each instance defaults to its own name)",
                    )
                )
        seen: set[str] = set()
        for i, disk in enumerate(self.data_disks):
            if disk.name in seen:
                issues.append((("data_disks", i, "name"), f"data disk {disk.name} is listed twice"))
            seen.add(disk.name)
        if issues:
            raise issues_error(issues)
        return self


class PlacementSpec(_Model):
    """How unpinned VMs are spread over hosts (see virtstack.placement)."""

    strategy: Literal["spread", "pack"] = "spread"


class StackSpec(_Model):
    """A whole stack file."""

    hosts: Annotated[dict[Name, HostSpec], Field(min_length=1)]
    images: dict[Name, ImageSpec] = Field(default_factory=dict)
    vms: dict[Name, VmSpec] = Field(default_factory=dict)
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    # Disks a plan deletes are kept this many days in their pool's trash (`virtstack trash`).
    trash_days: Annotated[int, Field(strict=True, ge=0, le=3650)] = DEFAULT_TRASH_DAYS

    @model_validator(mode="before")
    @classmethod
    def _drop_extension_keys(cls, data: Any) -> Any:
        # "x-" keys hold YAML anchors for reuse, like docker-compose's.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        return data
