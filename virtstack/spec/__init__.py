"""The stack file: its scalars, models and loader (virtstack.spec.loader).  No libvirt.

Modules:
    scalars   -- scalar types: each validator with the JSON Schema of what it accepts.
    uri       -- libvirt connection URIs (the allow-list of parameters).
    models    -- the pydantic models below.
    yamldoc   -- YAML text -> data (limits, duplicate keys, positions).
    loader    -- load_stack / load_spec: file -> validated spec and its expanded fleet.

Public API (all models are frozen and reject unknown keys):
    StackSpec       -- the whole file: hosts, images, vms, placement.
    HostSpec        -- uri, domain_type, capacity, pools, networks.
    Capacity        -- vcpus, memory, disk that virtstack may allocate on a host.
    PoolSpec        -- path of a directory storage pool on the host.
    NetworkSpec     -- mode nat|isolated|bridge, cidr, dhcp, bridge, gateway;
                       ``dhcp_enabled`` and ``gateway_address`` resolve defaults.
    ImageSpec       -- source (path or https URL), format, sha256; ``disk_format``
                       resolves the format from the extension.
    VmSpec          -- one VM group (``count`` instances) and its settings.
    DataDiskSpec, NicSpec, CloudInitSpec, UserSpec, WriteFileSpec, PlacementSpec.
    NAME_PATTERN, MIN_MEMORY, DEFAULT_SUDO, ISSUES_ERROR_TYPE.

Shape decisions (beyond the stack file example):
    * Sizes are stored as int bytes (see virtstack.units for the syntax).
    * Names of hosts, pools, networks, images, VM groups and data disks match
      NAME_PATTERN, so they are valid libvirt names and safe in file names.
      A YAML integer key (``123:``) is accepted as the name "123".
    * ``hosts.*.pools`` needs at least one pool; ``networks`` may be empty.
    * Networks: ``cidr`` is required for nat/isolated and optional for bridge;
      ``dhcp`` defaults to true for nat/isolated (libvirt runs dnsmasq there)
      and must stay false for bridge (libvirt serves no DHCP on a host bridge;
      NICs without ``ip`` still ask the LAN's DHCP server).  Bridge networks
      may name their LAN ``gateway``; nat/isolated always use the first host
      address of the cidr (libvirt puts the host there).
    * Images: ``format`` may be left out when the source ends in .qcow2/.qcow
      (qcow2) or .raw (raw); ``.img`` is ambiguous (Ubuntu's are qcow2) so it
      needs ``format``.  Relative paths are relative to the project root; the
      caller resolves them (and keeps them inside the image directories, see
      virtstack.edge).  Compressed images are rejected.  URLs must be https
      and carry ``sha256``.
    * VMs: with ``count > 1`` a NIC may not set ``mac`` and cloud_init may not
      set ``hostname`` (every instance would get the same one).  A data disk
      may not be called ``root`` (that is the root disk's name).
    * ``cloud_init.users[].sudo``: true means ``ALL=(ALL) NOPASSWD:ALL``, a
      string is passed to cloud-init as is, false/omitted grants nothing.
      ``shell`` defaults to /bin/bash.  ``cloud_init.domain`` (optional) makes
      the fqdn ``<hostname>.<domain>``.
    * Passwords and raw ``user_data`` are SecretStr: they never appear in a
      repr or an error message.  Raw user_data must start with a cloud-init
      header (``#cloud-config``, ``#!``, ...), since cloud-init silently
      ignores user data without one.
    * Host URIs (a stack file may come from anyone who can open a pull
      request): query parameters only from an allow-list per transport
      (_URI_PARAMS; no program overrides such as ``command``/``netcat``, no
      ``no_verify``), no password, host and user names that cannot pass for
      ssh options; ``qemu+tcp`` only with ``insecure_transport: true``.
    * Users: at most one of ``password``, ``password_hash``,
      ``password_env`` (VIRTSTACK_PASSWORD_* only) and ``password_file``.
    * Top-level keys starting with ``x-`` are ignored, so a file can hold YAML
      anchors (``x-small: &small {vcpus: 1, memory: 512MiB}``).

Model validators that find problems in sub-fields raise a PydanticCustomError
of type ISSUES_ERROR_TYPE whose ``ctx["issues"]`` lists ``(loc, message)``
pairs relative to the model; the loader turns them into precise paths.
"""

from virtstack.spec.guest import PASSWORD_ENV_PREFIX
from virtstack.spec.models import (
    Capacity,
    CloudInitSpec,
    DataDiskSpec,
    HostSpec,
    ImageSpec,
    NetworkSpec,
    NicSpec,
    PlacementSpec,
    PoolSpec,
    StackSpec,
    UserSpec,
    VmSpec,
    WriteFileSpec,
)
from virtstack.spec.scalars import (
    DEFAULT_SUDO,
    ISSUES_ERROR_TYPE,
    MIN_MEMORY,
    NAME_MAX,
    NAME_PATTERN,
    Memory,
    Name,
    check_ipv4,
    check_name,
    detect_image_format,
)
from virtstack.spec.uri import check_uri, uri_transport_is_plain

__all__ = [
    "DEFAULT_SUDO",
    "ISSUES_ERROR_TYPE",
    "MIN_MEMORY",
    "NAME_MAX",
    "NAME_PATTERN",
    "PASSWORD_ENV_PREFIX",
    "Capacity",
    "CloudInitSpec",
    "DataDiskSpec",
    "HostSpec",
    "ImageSpec",
    "Memory",
    "Name",
    "NetworkSpec",
    "NicSpec",
    "PlacementSpec",
    "PoolSpec",
    "StackSpec",
    "UserSpec",
    "VmSpec",
    "WriteFileSpec",
    "check_ipv4",
    "check_name",
    "check_uri",
    "detect_image_format",
    "uri_transport_is_plain",
]
