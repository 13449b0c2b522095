"""Scalar types of the stack file: each validator and the JSON Schema of what it accepts, together.

Every scalar is ``Annotated[T, Scalar(check, schema)]``: ``check`` validates (messages fit for people
editing YAML, never echoing secrets) and ``schema`` is what virtstack.ops.schema publishes, so a
pattern is written once and used by both.  Sizes go through virtstack.units (the one size parser).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import AddressValueError, IPv4Address, IPv4Network, ip_address, ip_network
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from virtstack.contract import normalise_disk, normalise_memory
from virtstack.errors import shorten
from virtstack.units import MIB, SIZE_HELP, SIZE_PATTERN, format_size, parse_size


@dataclass(frozen=True)
class Scalar:
    """Pydantic annotation: validate with ``check`` (a plain validator), publish ``schema``."""

    check: Callable[[Any], Any]
    # Out of hash and equality: typing hashes Annotated metadata (``X | None``), and a dict cannot be.
    schema: JsonSchemaValue = field(compare=False)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.check)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return copy.deepcopy(self.schema)  # a copy the generator may change


def string(pattern: str | None = None, description: str | None = None, **extra: Any) -> JsonSchemaValue:
    schema: JsonSchemaValue = {"type": "string", **extra}
    if pattern:
        schema["pattern"] = pattern
    if description:
        schema["description"] = description
    return schema


def size_schema(minimum: int) -> JsonSchemaValue:
    return {
        "anyOf": [{"type": "integer", "minimum": minimum}, {"type": "string", "pattern": SIZE_PATTERN}],
        "description": SIZE_HELP,
    }


# One DNS label: names, hostnames and each part of a host name in a URI.
DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
NAME_PATTERN = rf"^{DNS_LABEL}$"
NAME_MAX = 63
MIN_MEMORY = 128 * MIB
MAX_COUNT = 10_000  # far beyond any real fleet; stops a typo from expanding forever
DEFAULT_SUDO = "ALL=(ALL) NOPASSWD:ALL"
ISSUES_ERROR_TYPE = "virtstack_issues"

Loc = tuple[str | int, ...]

_NAME_RE = re.compile(NAME_PATTERN)


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
    raise ValueError(f"invalid name {shorten(text)}: {reason}")


Name = Annotated[
    str, Scalar(check_name, string(NAME_PATTERN, "lowercase letters, digits and '-', at most 63 characters"))
]


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


Memory = Annotated[int, Scalar(_check_memory, size_schema(MIN_MEMORY))]
PositiveSize = Annotated[int, Scalar(_check_positive_size, size_schema(1))]
DiskSize = Annotated[int, Scalar(_check_disk_size, size_schema(1))]
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
StrictBool = Annotated[bool, Field(strict=True)]


# A dotted quad as IPv4Address accepts it (no leading zeros, ASCII digits): read without its
# pure-Python parser, which took a tenth of loading a 10,000-VM file. Anything else takes the full path.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def check_ipv4(value: object) -> IPv4Address:
    if isinstance(value, IPv4Address):
        return value
    text = _require_str(value, "an IPv4 address")
    if _DOTTED_QUAD.fullmatch(text):
        a, b, c, d = text.split(".")
        return IPv4Address((int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d))
    if "/" in text:
        raise ValueError(
            f"write the address without a prefix ({shorten(text)}); the prefix comes from the network"
        )
    try:
        return IPv4Address(text)
    except AddressValueError:
        pass
    try:
        ip_address(text)
    except ValueError:
        raise ValueError(f"invalid IPv4 address {shorten(text)}") from None
    raise ValueError(f"{shorten(text)} is an IPv6 address; only IPv4 is supported")


def _check_cidr(value: object) -> IPv4Network:
    if isinstance(value, IPv4Network):
        network = value
    else:
        text = _require_str(value, "a network in CIDR form, e.g. 10.77.0.0/24,")
        if "/" not in text:
            raise ValueError(f"{shorten(text)} is not in CIDR form (e.g. 10.77.0.0/24)")
        try:
            parsed = ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"invalid network {shorten(text)} (expected e.g. 10.77.0.0/24)") from None
        if not isinstance(parsed, IPv4Network):
            raise ValueError(f"{shorten(text)} is an IPv6 network; only IPv4 is supported")
        if parsed.network_address != IPv4Address(text.split("/", 1)[0]):
            raise ValueError(f"{text} has host bits set (did you mean {parsed}?)")
        network = parsed
    if network.prefixlen > 30:
        # /31 and /32 leave no room for the gateway plus one guest.
        raise ValueError(f"prefix /{network.prefixlen} is too small a network (at most /30)")
    return network


IPv4 = Annotated[
    IPv4Address, Scalar(check_ipv4, string(None, "an IPv4 address without prefix", format="ipv4"))
]
# The schema's pattern is only the shape; the validator checks the numbers (ipaddress does that).
Cidr = Annotated[
    IPv4Network,
    Scalar(
        _check_cidr, string(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$", "an IPv4 network, e.g. 10.77.0.0/24")
    ),
]

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _check_mac(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError('must be a quoted string like "52:54:00:12:34:56"')
    text = _require_str(value, "a MAC address").lower().replace("-", ":")
    if not _MAC_RE.match(text):
        raise ValueError(f"invalid MAC address {shorten(text)} (expected e.g. 52:54:00:12:34:56)")
    if int(text[:2], 16) & 1:
        raise ValueError(f"{text} is a multicast address; a NIC needs a unicast one")
    if text == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a usable MAC address")
    return text


# The schema takes what the validator normalises (upper case, '-'): editors must not flag those.
Mac = Annotated[
    str,
    Scalar(
        _check_mac,
        string(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$", "a unicast MAC, e.g. 52:54:00:12:34:56"),
    ),
]


def _check_abs_path(value: object) -> str:
    text = _require_str(value, "an absolute path")
    if not text.startswith("/"):
        raise ValueError(f"must be an absolute path (got {shorten(text)})")
    if "\0" in text or "\n" in text:
        raise ValueError("must not contain NUL or newline characters")
    if ".." in text.split("/"):
        raise ValueError(f"must not contain '..' (got {shorten(text)})")
    return text


AbsPath = Annotated[str, Scalar(_check_abs_path, string("^/", "an absolute path"))]

_BRIDGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"
_BRIDGE_RE = re.compile(_BRIDGE_PATTERN)


def _check_bridge(value: object) -> str:
    text = _require_str(value, "a bridge interface name")
    if not _BRIDGE_RE.match(text):
        raise ValueError(
            f"invalid bridge interface name {shorten(text)} (at most 15 letters, digits, '_', '.', '-')"
        )
    return text


BridgeName = Annotated[
    str, Scalar(_check_bridge, string(_BRIDGE_PATTERN, "an existing host bridge, e.g. br0"))
]

# One DNS label is exactly what a name is (NAME_PATTERN).
_HOSTNAME_RE = _NAME_RE


def _check_hostname(value: object) -> str:
    text = _require_str(value, "a hostname")
    if not _HOSTNAME_RE.match(text):
        raise ValueError(
            f"invalid hostname {shorten(text)} (one label: lowercase letters, digits, '-', at most 63)"
        )
    return text


def _check_domain(value: object) -> str:
    text = _require_str(value, "a DNS domain")
    labels = text.split(".")
    if len(text) > 253 or not all(_HOSTNAME_RE.match(label) for label in labels):
        raise ValueError(f"invalid DNS domain {shorten(text)} (e.g. lab.example.com)")
    return text


Hostname = Annotated[str, Scalar(_check_hostname, string(NAME_PATTERN, "one DNS label"))]
Domain = Annotated[str, Scalar(_check_domain, string(None, "a DNS domain, e.g. lab.example.com"))]

URL_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
COMPRESSED_SUFFIXES = (".xz", ".gz", ".bz2", ".zst", ".zip", ".tar", ".tgz", ".7z")


def _check_image_source(value: object) -> str:
    text = _require_str(value, "a path or an https URL")
    if not text.strip() or text != text.strip() or "\n" in text or "\0" in text:
        raise ValueError("must be a non-empty path or URL without surrounding whitespace")
    match = URL_SCHEME_RE.match(text)
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
            raise ValueError(f"invalid URL {shorten(text)}") from None
        if not netloc:
            raise ValueError(f"URL {shorten(text)} has no host")
    return text


ImageSource = Annotated[
    str,
    Scalar(
        _check_image_source,
        string(None, "a local path in an image directory (relative to the project root) or an https URL"),
    ),
]

_SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
_SHA256_RE = re.compile(_SHA256_PATTERN)


def _check_sha256(value: object) -> str:
    text = _require_str(value, "a SHA-256 digest")
    if not _SHA256_RE.match(text):
        raise ValueError(
            f"must be a SHA-256 digest: 64 hex digits, as sha256sum prints (got {shorten(text)})"
        )
    return text.lower()


def source_path(source: str) -> str:
    if URL_SCHEME_RE.match(source):
        try:
            return urlsplit(source).path
        except ValueError:
            return source
    return source


def detect_image_format(source: str) -> Literal["qcow2", "raw"] | None:
    """Format implied by the extension of a path or URL, or None."""
    path = source_path(source).lower()
    if path.endswith((".qcow2", ".qcow")):
        return "qcow2"
    if path.endswith(".raw"):
        return "raw"
    return None


Sha256 = Annotated[
    str, Scalar(_check_sha256, string(_SHA256_PATTERN, "the image's SHA-256, as sha256sum prints it"))
]
