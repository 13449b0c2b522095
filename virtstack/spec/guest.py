"""Scalar types of what goes into a guest through cloud-init: users, keys, sudo rules, packages,
commands, files, and where passwords come from (see virtstack.spec.scalars for Scalar)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import SecretStr

from virtstack.errors import shorten
from virtstack.spec.scalars import DEFAULT_SUDO, Scalar, _require_str, string

_USER = r"[a-z_][a-z0-9_-]{0,31}"
_USER_RE = re.compile(rf"^{_USER}$")


def _check_username(value: object) -> str:
    text = _require_str(value, "a user name")
    if not _USER_RE.match(text):
        raise ValueError(
            f"invalid user name {shorten(text)} (lowercase letters, digits, '_', '-'; at most 32)"
        )
    return text


Username = Annotated[str, Scalar(_check_username, string(rf"^{_USER}$", "a Linux user name"))]

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


# The schema checks the prefix only (SSH_KEY_TYPES all start so); the validator checks the rest.
SshKey = Annotated[
    str, Scalar(_check_ssh_key, string(r"^\s*(ssh-|ecdsa-|sk-)", "an OpenSSH public key (the .pub file)"))
]


def _check_sudo(value: object) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_SUDO
    if isinstance(value, str) and value.strip() and "\n" not in value:
        return value
    raise ValueError("must be true, false or a sudoers rule such as 'ALL=(ALL) NOPASSWD:ALL'")


Sudo = Annotated[
    str | None,
    Scalar(
        _check_sudo,
        {
            "anyOf": [{"type": "boolean"}, {"type": "string"}, {"type": "null"}],
            "description": "true for ALL=(ALL) NOPASSWD:ALL, a sudoers rule, or false",
        },
    ),
]


def _check_package(value: object) -> str:
    text = _require_str(value, "a package name")
    if not text or any(ch.isspace() for ch in text):
        raise ValueError(f"invalid package name {shorten(text)} (one package per entry)")
    return text


Package = Annotated[str, Scalar(_check_package, string(r"^\S+$", "one package name"))]


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


RunCmd = Annotated[
    str | list[str],
    Scalar(
        _check_runcmd,
        {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            "description": "a shell command, or a command as a list of arguments",
        },
    ),
]

_PERMISSIONS_PATTERN = r"^0?[0-7]{3,4}$"
_PERMISSIONS_RE = re.compile(_PERMISSIONS_PATTERN)


def _check_permissions(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 0644 as the octal number 420: ambiguous, ask for a string.
        raise ValueError("must be a quoted octal string like '0644'")
    text = _require_str(value, "an octal mode like '0644'")
    if not _PERMISSIONS_RE.match(text):
        raise ValueError(f"invalid mode {shorten(text)} (expected an octal string like '0644')")
    return text


Permissions = Annotated[
    str,
    Scalar(_check_permissions, string(_PERMISSIONS_PATTERN, "an octal mode as a quoted string, e.g. '0644'")),
]

_OWNER_PATTERN = rf"^{_USER}(:{_USER})?$"
_OWNER_RE = re.compile(_OWNER_PATTERN)


def _check_owner(value: object) -> str:
    text = _require_str(value, "an owner like 'ops:ops'")
    if not _OWNER_RE.match(text):
        raise ValueError(f"invalid owner {shorten(text)} (expected 'user' or 'user:group')")
    return text


Owner = Annotated[str, Scalar(_check_owner, string(_OWNER_PATTERN, "user or user:group"))]


def nonempty_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not value.get_secret_value():
        raise ValueError("must not be empty")
    return value


_PASSWORD_HASH_RE = re.compile(r"^\$(y|6|5|2[aby])\$[./A-Za-z0-9$=,]{8,}$")
# Only variables meant for this: a stack file must not be able to copy any variable of the machine
# running virtstack (a CI secret, the state passphrase) into a guest it controls.
PASSWORD_ENV_PREFIX = "VIRTSTACK_PASSWORD_"
_PASSWORD_ENV_PATTERN = rf"^{PASSWORD_ENV_PREFIX}[A-Z0-9_]+$"
_PASSWORD_ENV_RE = re.compile(_PASSWORD_ENV_PATTERN)
_SECRET_FILE_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def check_password_hash(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not _PASSWORD_HASH_RE.match(value.get_secret_value()):
        # Never echo it: a plain password pasted here by mistake must not reach a log.
        raise ValueError("must be a crypt(3) hash such as the output of `mkpasswd -m sha-512` ($6$…)")
    return value


def _check_password_env(value: object) -> str:
    text = _require_str(value, "an environment variable name")
    if not _PASSWORD_ENV_RE.match(text):
        raise ValueError(
            f"must be an environment variable named {PASSWORD_ENV_PREFIX}<NAME> (uppercase letters, "
            f"digits, '_'), got {shorten(text)}"
        )
    return text


def _check_secret_file(value: object) -> str:
    text = _require_str(value, "a file name in the secrets directory")
    if not _SECRET_FILE_RE.match(text) or ".." in text.split("/"):
        raise ValueError(
            f"must be a relative path inside the secrets directory (no '..'), got {shorten(text)}"
        )
    return text


PasswordEnv = Annotated[
    str, Scalar(_check_password_env, string(_PASSWORD_ENV_PATTERN, "a VIRTSTACK_PASSWORD_* variable"))
]
SecretFile = Annotated[
    str, Scalar(_check_secret_file, string(None, "a file in the secrets directory (VIRTSTACK_SECRETS_DIR)"))
]
