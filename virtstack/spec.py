"""The stack file schema: pydantic models, no I/O, no libvirt.

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

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import AddressValueError, IPv4Address, IPv4Network, ip_address, ip_network
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from virtstack.contract import DEFAULT_TRASH_DAYS, normalise_disk, normalise_memory
from virtstack.units import MIB, format_size, parse_size

__all__ = [
    "DEFAULT_SUDO",
    "ISSUES_ERROR_TYPE",
    "MIN_MEMORY",
    "NAME_PATTERN",
    "Capacity",
    "CloudInitSpec",
    "DataDiskSpec",
    "HostSpec",
    "ImageSpec",
    "NetworkSpec",
    "NicSpec",
    "PlacementSpec",
    "PoolSpec",
    "StackSpec",
    "UserSpec",
    "VmSpec",
    "WriteFileSpec",
]

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
NAME_MAX = 63
MIN_MEMORY = 128 * MIB
MAX_COUNT = 10_000  # far beyond any real fleet; stops a typo from expanding forever
DEFAULT_SUDO = "ALL=(ALL) NOPASSWD:ALL"
ISSUES_ERROR_TYPE = "virtstack_issues"

Loc = tuple[str | int, ...]

_NAME_RE = re.compile(NAME_PATTERN)


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def issues_error(issues: Sequence[tuple[Loc, str]]) -> PydanticCustomError:
    """Error carrying several sub-field problems (see module docstring)."""
    summary = "; ".join(message for _, message in issues)
    return PydanticCustomError(ISSUES_ERROR_TYPE, "{summary}", {"summary": summary, "issues": list(issues)})


# --------------------------------------------------------------------- scalars
# Plain validators (rather than pydantic's built-in types) give messages that
# make sense to someone editing YAML, and never echo secrets.


def _require_str(value: object, what: str) -> str:
    if isinstance(value, bool):
        raise ValueError(
            f"must be {what}, not a boolean (YAML reads yes/no/on/off/true/false as booleans; quote it)"
        )
    if not isinstance(value, str):
        raise ValueError(f"must be {what} written as a string")
    return value


def check_name(value: object) -> str:
    """Validate a libvirt-safe name (NAME_PATTERN); YAML int keys become strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _require_str(value, "a name")
    if _NAME_RE.match(text):
        return text
    if not text:
        reason = "must not be empty"
    elif len(text) > NAME_MAX:
        reason = f"is {len(text)} characters long (at most {NAME_MAX})"
    elif text.lower() != text:
        reason = "must be lowercase"
    elif text[0] == "-" or text[-1] == "-":
        reason = "must start and end with a letter or digit"
    else:
        reason = "may only contain lowercase letters, digits and '-'"
    raise ValueError(f"invalid name {_shorten(text)}: {reason}")


Name = Annotated[str, PlainValidator(check_name)]


def _check_memory(value: object) -> int:
    size = parse_size(value)
    if size < MIN_MEMORY:
        raise ValueError(f"must be at least {format_size(MIN_MEMORY)} (got {format_size(size)})")
    # As libvirt keeps it (whole MiB): what is shown, written and read back is one number.
    return normalise_memory(size)


def _check_positive_size(value: object) -> int:
    size = parse_size(value)
    if size <= 0:
        raise ValueError("must be greater than 0")
    return size


def _check_disk_size(value: object) -> int:
    # As libvirt creates the volume (whole KiB), so a second run finds what it asked for.
    return normalise_disk(_check_positive_size(value))


Memory = Annotated[int, PlainValidator(_check_memory)]
PositiveSize = Annotated[int, PlainValidator(_check_positive_size)]
DiskSize = Annotated[int, PlainValidator(_check_disk_size)]
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
StrictBool = Annotated[bool, Field(strict=True)]


def check_ipv4(value: object) -> IPv4Address:
    if isinstance(value, IPv4Address):
        return value
    text = _require_str(value, "an IPv4 address")
    if "/" in text:
        raise ValueError(
            f"write the address without a prefix ({_shorten(text)}); the prefix comes from the network"
        )
    try:
        return IPv4Address(text)
    except AddressValueError:
        pass
    try:
        ip_address(text)
    except ValueError:
        raise ValueError(f"invalid IPv4 address {_shorten(text)}") from None
    raise ValueError(f"{_shorten(text)} is an IPv6 address; only IPv4 is supported")


def _check_cidr(value: object) -> IPv4Network:
    if isinstance(value, IPv4Network):
        network = value
    else:
        text = _require_str(value, "a network in CIDR form, e.g. 10.77.0.0/24,")
        if "/" not in text:
            raise ValueError(f"{_shorten(text)} is not in CIDR form (e.g. 10.77.0.0/24)")
        try:
            parsed = ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"invalid network {_shorten(text)} (expected e.g. 10.77.0.0/24)") from None
        if not isinstance(parsed, IPv4Network):
            raise ValueError(f"{_shorten(text)} is an IPv6 network; only IPv4 is supported")
        if parsed.network_address != IPv4Address(text.split("/", 1)[0]):
            raise ValueError(f"{text} has host bits set (did you mean {parsed}?)")
        network = parsed
    if network.prefixlen > 30:
        # /31 and /32 leave no room for the gateway plus one guest.
        raise ValueError(f"prefix /{network.prefixlen} is too small a network (at most /30)")
    return network


IPv4 = Annotated[IPv4Address, PlainValidator(check_ipv4)]
Cidr = Annotated[IPv4Network, PlainValidator(_check_cidr)]

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _check_mac(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError('must be a quoted string like "52:54:00:12:34:56"')
    text = _require_str(value, "a MAC address").lower().replace("-", ":")
    if not _MAC_RE.match(text):
        raise ValueError(f"invalid MAC address {_shorten(text)} (expected e.g. 52:54:00:12:34:56)")
    if int(text[:2], 16) & 1:
        raise ValueError(f"{text} is a multicast address; a NIC needs a unicast one")
    if text == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a usable MAC address")
    return text


Mac = Annotated[str, PlainValidator(_check_mac)]

URI_SCHEMES = ("qemu", "qemu+ssh", "qemu+tls", "qemu+tcp", "qemu+unix", "test")
_REMOTE_SCHEMES = {"qemu+ssh", "qemu+tls", "qemu+tcp"}

# Query parameters a stack file may pass to libvirt, per transport (libvirt's "extra parameters" of
# remote URIs).  An allow-list, because several of libvirt's parameters run programs or switch off
# verification: `command` and `netcat` name the program libvirt runs *locally* (or on the host) instead
# of ssh/nc, `no_verify` skips the host key / server certificate check, `name` redirects the remote
# connection.  A stack file comes through pull requests, so none of those may come from it.
_PATH_PARAMS = {"keyfile", "known_hosts", "socket", "pkipath"}
_URI_PARAMS: dict[str, dict[str, tuple[str, ...] | None]] = {
    # None: any value (absolute paths for _PATH_PARAMS); a tuple: the values allowed.
    "qemu+ssh": {
        "keyfile": None,
        "known_hosts": None,
        "known_hosts_verify": ("normal", "auto"),
        "sshauth": None,
        "socket": None,
        "no_tty": ("0", "1"),
        "mode": ("auto", "legacy", "direct"),
        "proxy": ("auto", "netcat", "native"),
    },
    "qemu+tls": {"pkipath": None, "mode": ("auto", "legacy", "direct")},
    "qemu+tcp": {"mode": ("auto", "legacy", "direct")},
    "qemu+unix": {"socket": None, "mode": ("auto", "legacy", "direct")},
    "qemu": {"socket": None, "mode": ("auto", "legacy", "direct")},
    "test": {},
}
_URI_PARAM_REASONS = {
    "command": "it names a program libvirt runs instead of ssh",
    "netcat": "it names a program run on the host instead of nc",
    "no_verify": "it turns off host key / certificate verification",
    "name": "it redirects the connection to another URI on the host",
    "tls_priority": "it can weaken TLS (e.g. +NULL ciphers)",
}
_SSHAUTH_METHODS = {"agent", "privkey", "keyboard", "password"}
_URI_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_URI_PATH_RE = re.compile(r"^/[A-Za-z0-9_./-]*$")
_URI_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _uri_params(text: str, scheme: str, query: str, remote_qemu: bool) -> None:
    """Check the query of a libvirt URI against _URI_PARAMS (see there)."""
    if not query:
        return
    if ";" in query:
        # libvirt splits parameters on ';' as well as '&'; one separator keeps our reading and its alike.
        raise ValueError(f"libvirt URI {_shorten(text)}: separate parameters with '&', not ';'")
    allowed = _URI_PARAMS["qemu+tls" if remote_qemu else scheme]
    seen: set[str] = set()
    for item in query.split("&"):
        raw_key, _, raw_value = item.partition("=")
        key, value = unquote(raw_key), unquote(raw_value)  # libvirt unescapes names and values too
        if key in seen:
            raise ValueError(f"libvirt URI {_shorten(text)}: parameter {key!r} is given twice")
        seen.add(key)
        if key not in allowed:
            reason = _URI_PARAM_REASONS.get(key)
            known = ", ".join(sorted(allowed)) or "none"
            why = f"not allowed: {reason}" if reason else f"unknown for {scheme} (allowed: {known})"
            raise ValueError(f"libvirt URI {_shorten(text)}: parameter {key!r} is {why}")
        choices = allowed[key]
        if choices is not None and value not in choices:
            wanted = ", ".join(choices)
            raise ValueError(
                f"libvirt URI {_shorten(text)}: {key} must be one of {wanted} (got {_shorten(value)})"
            )
        # Plain characters only: libvirt puts `socket` into the shell command it runs on the host.
        if key in _PATH_PARAMS and (not _URI_PATH_RE.match(value) or ".." in value.split("/")):
            raise ValueError(
                f"libvirt URI {_shorten(text)}: {key} must be an absolute path of letters, digits and _.-/"
            )
        if key == "sshauth" and not (value and set(value.split(",")) <= _SSHAUTH_METHODS):
            methods = ", ".join(sorted(_SSHAUTH_METHODS))
            raise ValueError(f"libvirt URI {_shorten(text)}: sshauth takes a list of {methods}")


def check_uri(value: object) -> str:
    """A libvirt connection URI we know how to use.

    qemu[+ssh|+tls|+tcp|+unix]://[user@host[:port]]/system|/session[?params];
    ``test:///default`` for libvirt's mock driver.  Query parameters: see _URI_PARAMS.  No password:
    the URI is kept in the stack's state and outputs in clear.
    """
    text = _require_str(value, "a libvirt URI")
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise ValueError(f"invalid libvirt URI {_shorten(text)}: contains whitespace")
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"invalid libvirt URI {_shorten(text)}") from None
    scheme = parts.scheme
    if "://" not in text or scheme not in URI_SCHEMES:
        known = ", ".join(URI_SCHEMES)
        raise ValueError(f"invalid libvirt URI {_shorten(text)}: the scheme must be one of {known}")
    if parts.password is not None:
        # Never echo the URI here: it holds the password.
        raise ValueError(
            "the libvirt URI contains a password (user:password@); it would be stored in clear in the "
            "state and outputs: use an ssh key (keyfile=) or TLS certificates instead"
        )
    if scheme in _REMOTE_SCHEMES and not hostname:
        raise ValueError(f"{scheme} URI {_shorten(text)} needs a host, e.g. {scheme}://user@host/system")
    if scheme in {"qemu+unix", "test"} and parts.netloc:
        raise ValueError(f"{scheme} URI {_shorten(text)} must not name a host (use {scheme}:///...)")
    # libvirt hands host and user to ssh as arguments: one starting with '-' would be read as an ssh
    # option (-oProxyCommand=... runs a program), so both must look like what they are.
    if hostname and not (_URI_HOST_RE.match(hostname) or _is_ip(hostname)):
        raise ValueError(f"libvirt URI {_shorten(text)}: invalid host name {_shorten(hostname)}")
    if parts.username is not None and not _URI_USER_RE.match(unquote(parts.username)):
        raise ValueError(
            f"libvirt URI {_shorten(text)}: invalid user name (letters, digits, '_', '.', '-'; "
            "not starting with '-')"
        )
    allowed_paths = ("/default",) if scheme == "test" else ("/system", "/session")
    if parts.path not in allowed_paths:
        wanted = " or ".join(allowed_paths)
        raise ValueError(f"libvirt URI {_shorten(text)} must end in {wanted}")
    if parts.fragment:
        raise ValueError(f"libvirt URI {_shorten(text)} must not have a #fragment")
    # qemu://host/... is remote over TLS (libvirt's default transport).
    _uri_params(text, scheme, parts.query, remote_qemu=scheme == "qemu" and bool(parts.netloc))
    return text


def uri_transport_is_plain(uri: str) -> bool:
    """Whether the URI's transport sends everything unencrypted over the network (qemu+tcp)."""
    return urlsplit(uri).scheme == "qemu+tcp"


LibvirtUri = Annotated[str, PlainValidator(check_uri)]


def _check_abs_path(value: object) -> str:
    text = _require_str(value, "an absolute path")
    if not text.startswith("/"):
        raise ValueError(f"must be an absolute path (got {_shorten(text)})")
    if "\0" in text or "\n" in text:
        raise ValueError("must not contain NUL or newline characters")
    if ".." in text.split("/"):
        raise ValueError(f"must not contain '..' (got {_shorten(text)})")
    return text


AbsPath = Annotated[str, PlainValidator(_check_abs_path)]

_BRIDGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def _check_bridge(value: object) -> str:
    text = _require_str(value, "a bridge interface name")
    if not _BRIDGE_RE.match(text):
        raise ValueError(
            f"invalid bridge interface name {_shorten(text)} (at most 15 letters, digits, '_', '.', '-')"
        )
    return text


BridgeName = Annotated[str, PlainValidator(_check_bridge)]

_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _check_hostname(value: object) -> str:
    text = _require_str(value, "a hostname")
    if not _HOSTNAME_RE.match(text):
        raise ValueError(
            f"invalid hostname {_shorten(text)} (one label: lowercase letters, digits, '-', at most 63)"
        )
    return text


def _check_domain(value: object) -> str:
    text = _require_str(value, "a DNS domain")
    labels = text.split(".")
    if len(text) > 253 or not all(_HOSTNAME_RE.match(label) for label in labels):
        raise ValueError(f"invalid DNS domain {_shorten(text)} (e.g. lab.example.com)")
    return text


Hostname = Annotated[str, PlainValidator(_check_hostname)]
Domain = Annotated[str, PlainValidator(_check_domain)]

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def _check_username(value: object) -> str:
    text = _require_str(value, "a user name")
    if not _USER_RE.match(text):
        raise ValueError(
            f"invalid user name {_shorten(text)} (lowercase letters, digits, '_', '-'; at most 32)"
        )
    return text


Username = Annotated[str, PlainValidator(_check_username)]

SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def _check_ssh_key(value: object) -> str:
    # Never echo the value: a pasted *private* key must not end up in a log.
    text = _require_str(value, "an OpenSSH public key").strip()
    if "PRIVATE KEY" in text:
        raise ValueError("this is a private key; use the public key (the .pub file) instead")
    fields = text.split()
    if "\n" in text or len(fields) < 2 or fields[0] not in SSH_KEY_TYPES or not _B64_RE.match(fields[1]):
        raise ValueError("does not look like an OpenSSH public key (expected 'ssh-ed25519 AAAA… comment')")
    return text


SshKey = Annotated[str, PlainValidator(_check_ssh_key)]


def _check_sudo(value: object) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_SUDO
    if isinstance(value, str) and value.strip() and "\n" not in value:
        return value
    raise ValueError("must be true, false or a sudoers rule such as 'ALL=(ALL) NOPASSWD:ALL'")


Sudo = Annotated[str | None, PlainValidator(_check_sudo)]


def _check_package(value: object) -> str:
    text = _require_str(value, "a package name")
    if not text or any(ch.isspace() for ch in text):
        raise ValueError(f"invalid package name {_shorten(text)} (one package per entry)")
    return text


Package = Annotated[str, PlainValidator(_check_package)]


def _check_runcmd(value: object) -> str | list[str]:
    if isinstance(value, str) and value.strip():
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, str) and not isinstance(item, bool) for item in value)
    ):
        return [str(item) for item in value]
    raise ValueError("must be a non-empty shell command string or a list of argument strings")


RunCmd = Annotated[str | list[str], PlainValidator(_check_runcmd)]

_PERMISSIONS_RE = re.compile(r"^0?[0-7]{3,4}$")


def _check_permissions(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 0644 as the octal number 420: ambiguous, ask for a string.
        raise ValueError("must be a quoted octal string like '0644'")
    text = _require_str(value, "an octal mode like '0644'")
    if not _PERMISSIONS_RE.match(text):
        raise ValueError(f"invalid mode {_shorten(text)} (expected an octal string like '0644')")
    return text


Permissions = Annotated[str, PlainValidator(_check_permissions)]

_OWNER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$")


def _check_owner(value: object) -> str:
    text = _require_str(value, "an owner like 'ops:ops'")
    if not _OWNER_RE.match(text):
        raise ValueError(f"invalid owner {_shorten(text)} (expected 'user' or 'user:group')")
    return text


Owner = Annotated[str, PlainValidator(_check_owner)]

_URL_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_COMPRESSED_SUFFIXES = (".xz", ".gz", ".bz2", ".zst", ".zip", ".tar", ".tgz", ".7z")


def _check_image_source(value: object) -> str:
    text = _require_str(value, "a path or an https URL")
    if not text.strip() or text != text.strip() or "\n" in text or "\0" in text:
        raise ValueError("must be a non-empty path or URL without surrounding whitespace")
    match = _URL_SCHEME_RE.match(text)
    if match:
        scheme = match.group(1).lower()
        if scheme == "http":
            # Plain http can be altered on the way; https plus the sha256 below pins the content.
            raise ValueError("plain http is not supported: use an https URL (with sha256) or a local path")
        if scheme != "https":
            raise ValueError(f"unsupported URL scheme {scheme!r} (use https or a local path)")
        try:
            netloc = urlsplit(text).netloc
        except ValueError:
            raise ValueError(f"invalid URL {_shorten(text)}") from None
        if not netloc:
            raise ValueError(f"URL {_shorten(text)} has no host")
    return text


ImageSource = Annotated[str, PlainValidator(_check_image_source)]

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


def _check_sha256(value: object) -> str:
    text = _require_str(value, "a SHA-256 digest")
    if not _SHA256_RE.match(text):
        raise ValueError(
            f"must be a SHA-256 digest: 64 hex digits, as sha256sum prints (got {_shorten(text)})"
        )
    return text.lower()


def _nonempty_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not value.get_secret_value():
        raise ValueError("must not be empty")
    return value


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

    Networks of the same name on several hosts must agree on mode, cidr and
    dhcp (checked in virtstack.validate), so ``lab`` means one thing fleet-wide.
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
        """The router guests use: .1 of nat networks, ``gateway`` of bridges.

        Isolated networks have the host on .1 too (see reserved_address) but
        offer no route out, so they have no gateway.
        """
        if self.mode == "nat" and self.cidr is not None:
            return self.cidr.network_address + 1
        if self.mode == "bridge":
            return self.gateway
        return None

    @property
    def host_address(self) -> IPv4Address | None:
        """The address libvirt gives the host on nat/isolated networks (.1)."""
        if self.mode != "bridge" and self.cidr is not None:
            return self.cidr.network_address + 1
        return None

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
    pools: Annotated[dict[Name, PoolSpec], Field(min_length=1)]
    networks: dict[Name, NetworkSpec] = Field(default_factory=dict)
    # qemu+tcp sends everything, seed ISOs with their passwords included, in clear: only on request.
    insecure_transport: StrictBool = False

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


class ImageSpec(_Model):
    """A base image, uploaded to each host that runs a VM using it."""

    source: ImageSource
    format: Literal["qcow2", "raw"] | None = None
    # Required for https sources: the download is verified against it before any host sees it.
    sha256: Annotated[str, PlainValidator(_check_sha256)] | None = None

    @property
    def is_url(self) -> bool:
        return _URL_SCHEME_RE.match(self.source) is not None

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
        lowered = _source_path(self.source).lower()
        if lowered.endswith(_COMPRESSED_SUFFIXES):
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


def _source_path(source: str) -> str:
    if _URL_SCHEME_RE.match(source):
        try:
            return urlsplit(source).path
        except ValueError:
            return source
    return source


def detect_image_format(source: str) -> Literal["qcow2", "raw"] | None:
    """Format implied by the extension of a path or URL, or None."""
    path = _source_path(source).lower()
    if path.endswith((".qcow2", ".qcow")):
        return "qcow2"
    if path.endswith(".raw"):
        return "raw"
    return None


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
_PASSWORD_HASH_RE = re.compile(r"^\$(y|6|5|2[aby])\$[./A-Za-z0-9$=,]{8,}$")
# Only variables meant for this: a stack file must not be able to copy any variable of the machine
# running virtstack (a CI secret, the state passphrase) into a guest it controls.
PASSWORD_ENV_PREFIX = "VIRTSTACK_PASSWORD_"
_PASSWORD_ENV_RE = re.compile(rf"^{PASSWORD_ENV_PREFIX}[A-Z0-9_]+$")
_SECRET_FILE_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def _check_password_hash(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not _PASSWORD_HASH_RE.match(value.get_secret_value()):
        # Never echo it: a plain password pasted here by mistake must not reach a log.
        raise ValueError("must be a crypt(3) hash such as the output of `mkpasswd -m sha-512` ($6$…)")
    return value


def _check_password_env(value: object) -> str:
    text = _require_str(value, "an environment variable name")
    if not _PASSWORD_ENV_RE.match(text):
        raise ValueError(
            f"must be an environment variable named {PASSWORD_ENV_PREFIX}<NAME> (uppercase letters, "
            f"digits, '_'), got {_shorten(text)}"
        )
    return text


def _check_secret_file(value: object) -> str:
    text = _require_str(value, "a file name in the secrets directory")
    if not _SECRET_FILE_RE.match(text) or ".." in text.split("/"):
        raise ValueError(
            f"must be a relative path inside the secrets directory (no '..'), got {_shorten(text)}"
        )
    return text


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
    password_env: Annotated[str, PlainValidator(_check_password_env)] | None = None
    password_file: Annotated[str, PlainValidator(_check_secret_file)] | None = None
    sudo: Sudo = None
    groups: list[Username] = Field(default_factory=list)
    shell: AbsPath = "/bin/bash"

    @field_validator("password")
    @classmethod
    def _check_password(cls, value: SecretStr | None) -> SecretStr | None:
        return _nonempty_secret(value)

    @field_validator("password_hash")
    @classmethod
    def _check_hash(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_password_hash(value)

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


class VmSpec(_Model):
    """A group of ``count`` identical VMs (see virtstack.fleet for expansion)."""

    count: Annotated[int, Field(strict=True, ge=1, le=MAX_COUNT)] = 1
    image: Name
    pool: Name | None = None
    vcpus: PositiveInt
    memory: Memory
    disk: DiskSize
    data_disks: list[DataDiskSpec] = Field(default_factory=list)
    nics: list[NicSpec] = Field(default_factory=list)
    cloud_init: CloudInitSpec | None = None
    user_data: SecretStr | None = None
    host: Name | None = None
    running: StrictBool = True
    autostart: StrictBool = False
    # Pulumi's protect: nothing deletes this VM or its disks, not even --allow-data-loss, until the
    # flag is removed (and applied) again.
    protect: StrictBool = False

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

    # fleet.expand_fleet's memo, (the vms mapping it expanded, the instances): validation and
    # placement both expand the fleet.  Keyed on the mapping itself, so a model_copy with new vms
    # recomputes.
    _fleet_memo: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _drop_extension_keys(cls, data: Any) -> Any:
        # "x-" keys hold YAML anchors for reuse, like docker-compose's.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
        return data
