"""Libvirt connection URIs a stack file may name (a stack file may come from anyone who can open a
pull request: see _URI_PARAMS)."""

from __future__ import annotations

import re
from ipaddress import ip_address
from typing import Annotated
from urllib.parse import unquote, urlsplit

from virtstack.errors import shorten
from virtstack.settings import test_driver_files_allowed
from virtstack.spec.scalars import DNS_LABEL, Scalar, _require_str, string

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
_URI_HOST_RE = re.compile(rf"^{DNS_LABEL}(\.{DNS_LABEL})*$")
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
        raise ValueError(f"libvirt URI {shorten(text)}: separate parameters with '&', not ';'")
    allowed = _URI_PARAMS["qemu+tls" if remote_qemu else scheme]
    seen: set[str] = set()
    for item in query.split("&"):
        raw_key, _, raw_value = item.partition("=")
        key, value = unquote(raw_key), unquote(raw_value)  # libvirt unescapes names and values too
        if key in seen:
            raise ValueError(f"libvirt URI {shorten(text)}: parameter {key!r} is given twice")
        seen.add(key)
        if key not in allowed:
            reason = _URI_PARAM_REASONS.get(key)
            known = ", ".join(sorted(allowed)) or "none"
            why = f"not allowed: {reason}" if reason else f"unknown for {scheme} (allowed: {known})"
            raise ValueError(f"libvirt URI {shorten(text)}: parameter {key!r} is {why}")
        choices = allowed[key]
        if choices is not None and value not in choices:
            wanted = ", ".join(choices)
            raise ValueError(
                f"libvirt URI {shorten(text)}: {key} must be one of {wanted} (got {shorten(value)})"
            )
        # Plain characters only: libvirt puts `socket` into the shell command it runs on the host.
        if key in _PATH_PARAMS and (not _URI_PATH_RE.match(value) or ".." in value.split("/")):
            raise ValueError(
                f"libvirt URI {shorten(text)}: {key} must be an absolute path of letters, digits and _.-/"
            )
        if key == "sshauth" and not (value and set(value.split(",")) <= _SSHAUTH_METHODS):
            methods = ", ".join(sorted(_SSHAUTH_METHODS))
            raise ValueError(f"libvirt URI {shorten(text)}: sshauth takes a list of {methods}")


def _simulated_host(path: str) -> bool:
    """test:///PATH/host.xml — a separate in-memory libvirt (the test driver) per file and connection:
    for simulated fleets in tests and benchmarks only (bench/sim.py), never for a real stack."""
    return path.startswith("/") and path.endswith(".xml") and test_driver_files_allowed()


def check_uri(value: object) -> str:
    """A libvirt connection URI we know how to use.

    qemu[+ssh|+tls|+tcp|+unix]://[user@host[:port]]/system|/session[?params];
    ``test:///default`` for libvirt's mock driver.  Query parameters: see _URI_PARAMS.  No password:
    the URI is kept in the stack's state and outputs in clear.
    """
    text = _require_str(value, "a libvirt URI")
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise ValueError(f"invalid libvirt URI {shorten(text)}: contains whitespace")
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"invalid libvirt URI {shorten(text)}") from None
    scheme = parts.scheme
    if "://" not in text or scheme not in URI_SCHEMES:
        known = ", ".join(URI_SCHEMES)
        raise ValueError(f"invalid libvirt URI {shorten(text)}: the scheme must be one of {known}")
    if parts.password is not None:
        # Never echo the URI here: it holds the password.
        raise ValueError(
            "the libvirt URI contains a password (user:password@); it would be stored in clear in the "
            "state and outputs: use an ssh key (keyfile=) or TLS certificates instead"
        )
    if scheme in _REMOTE_SCHEMES and not hostname:
        raise ValueError(f"{scheme} URI {shorten(text)} needs a host, e.g. {scheme}://user@host/system")
    if scheme in {"qemu+unix", "test"} and parts.netloc:
        raise ValueError(f"{scheme} URI {shorten(text)} must not name a host (use {scheme}:///...)")
    # libvirt hands host and user to ssh as arguments: one starting with '-' would be read as an ssh
    # option (-oProxyCommand=... runs a program), so both must look like what they are.
    if hostname and not (_URI_HOST_RE.match(hostname) or _is_ip(hostname)):
        raise ValueError(f"libvirt URI {shorten(text)}: invalid host name {shorten(hostname)}")
    if parts.username is not None and not _URI_USER_RE.match(unquote(parts.username)):
        raise ValueError(
            f"libvirt URI {shorten(text)}: invalid user name (letters, digits, '_', '.', '-'; "
            "not starting with '-')"
        )
    allowed_paths = ("/default",) if scheme == "test" else ("/system", "/session")
    if parts.path not in allowed_paths and not (scheme == "test" and _simulated_host(parts.path)):
        wanted = " or ".join(allowed_paths)
        raise ValueError(f"libvirt URI {shorten(text)} must end in {wanted}")
    if parts.fragment:
        raise ValueError(f"libvirt URI {shorten(text)} must not have a #fragment")
    # qemu://host/... is remote over TLS (libvirt's default transport).
    _uri_params(text, scheme, parts.query, remote_qemu=scheme == "qemu" and bool(parts.netloc))
    return text


def uri_transport_is_plain(uri: str) -> bool:
    """Whether the URI's transport sends everything unencrypted over the network (qemu+tcp)."""
    return urlsplit(uri).scheme == "qemu+tcp"


LibvirtUri = Annotated[
    str,
    Scalar(
        check_uri,
        string(
            "^(" + "|".join(re.escape(scheme) for scheme in URI_SCHEMES) + ")://",
            "a libvirt URI: qemu:///system, qemu+ssh://user@host/system, test:///default",
        ),
    ),
]
