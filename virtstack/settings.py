"""Every environment setting virtstack and the Pulumi engine run with, assembled in this one place.

Public API:
    Settings                          -- frozen; Settings.from_env(environ=None, root=None)
        .engine_env(environ)          -- the variables to add for an engine run (those not set already)
        .shell_exports(environ)       -- the same as `export` lines, for scripts/env.sh
    check_passphrase(environ, backend_url) -> bool   (raises SettingsError)
    check_backend_url(url)            -- raises SettingsError for a scheme Pulumi cannot open
    redact_url(url) -> str            -- a backend URL for messages: its password replaced by ****
    pulumi_version(root) -> str       -- the one pin: tools/pulumi/go.mod's pkg/v3 requirement
    LOCAL_DEV_PASSPHRASE

Stdlib (and virtstack.errors) only, on purpose: scripts/env.sh runs it with the system python3
before `make setup` has built the virtualenv (`python3 -m virtstack.settings --shell`), and the
provider process imports it without the engine's libraries.  `virtstack env --shell` prints the same lines.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from virtstack.errors import VirtstackError

__all__ = [
    "LOCAL_DEV_PASSPHRASE",
    "PREVIOUS_PLACEMENT_ENV",
    "Settings",
    "SettingsError",
    "check_backend_url",
    "check_passphrase",
    "pulumi_version",
    "redact_url",
]

# The documented local development passphrase (README); never for real secrets.
LOCAL_DEV_PASSPHRASE = "virtstack-local-dev"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# Resource operations in flight: the provider serves 16 at once (3 libvirt connections per host, 5
# requests each by libvirtd's default) and the engine runs as many; the engine's own default is
# 4 x cores (8 on two cores), measured slower for 25 VMs (bench/RESULTS.md).
DEFAULT_PROVIDER_THREADS = 16
DEFAULT_CONNECTIONS_PER_HOST = 3
DEFAULT_CONNECT_TIMEOUT = 30.0
# Engine switches that hold for every run: a local, offline engine (no update check, no plugin
# downloads) and gRPC's fork handlers off in every process it starts — the dynamic provider forks
# libvirt's ssh child (qemu+ssh hosts), and with the handlers on, gRPC ran in that child and sometimes
# killed it ("Connection reset by peer"; virtstack/provider/connection.py).
_FIXED = {
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "false",
    "GRPC_ENABLE_FORK_SUPPORT": "false",
}
# The placement the last deployment recorded, as JSON: the CLI reads it once and passes it to the
# Pulumi program in this variable (virtstack.edge.previous_placement).
PREVIOUS_PLACEMENT_ENV = "VIRTSTACK_PREVIOUS_PLACEMENT"
# The state backends the Pulumi CLI opens (DIY: file, PostgreSQL, object stores; https: a Pulumi Cloud).
# postgres:// and the object stores are shared between machines: their locks are never judged stale
# by a pid (virtstack.locks, virtstack.shared_state).
BACKEND_SCHEMES = ("file", "postgres", "postgresql", "s3", "azblob", "gs", "https")
_PIN = re.compile(r"^require github\.com/pulumi/pulumi/pkg/v3 v(\S+)$", re.M)


class SettingsError(VirtstackError):
    """A setting that cannot be used; the message is one line naming the variable."""


def pulumi_version(root: Path = PACKAGE_ROOT) -> str:
    """The Pulumi version everything uses: what tools/pulumi/go.mod builds (the Go module proxy serves
    the CLI from there); the Python SDK pin in pyproject.toml is checked against it by the unit tests."""
    path = root / "tools" / "pulumi" / "go.mod"
    try:
        found = _PIN.search(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SettingsError(f"{path}: cannot read the Pulumi version pin: {err.strerror}") from None
    if found is None:
        raise SettingsError(f"{path}: no `require github.com/pulumi/pulumi/pkg/v3 v…` line")
    return found.group(1)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def test_driver_files_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """VIRTSTACK_SIMULATED_HOSTS=1: `test:///PATH.xml` host URIs (libvirt's test driver, one in-memory
    hypervisor per file and connection) are accepted — for simulated fleets in tests and bench only."""
    return _flag(os.environ if environ is None else environ, "VIRTSTACK_SIMULATED_HOSTS")


def _number(environ: Mapping[str, str], name: str, default: float, kind: type = int) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw} must be above 0")
    return float(value) if kind is float else int(value)


def redact_url(url: str) -> str:
    """`url` for messages and listings: a password in it becomes ****."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("://", 1)[0] + "://…"
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:****@{netloc[1]}"))


def check_backend_url(url: str) -> None:
    """Refuse a PULUMI_BACKEND_URL the Pulumi CLI cannot open, in one line (password hidden).
    Checked where the engine's environment is assembled (engine_env), not on import: the provider
    process reads the settings too, and a bad URL must be a message, not a traceback."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in BACKEND_SCHEMES:
        known = ", ".join(f"{s}://" for s in BACKEND_SCHEMES)
        raise SettingsError(f"PULUMI_BACKEND_URL={redact_url(url)} is not a state backend ({known})")


def check_passphrase(environ: Mapping[str, str], backend_url: str) -> bool:
    """Refuse passphrase settings that would protect the stack's secrets with nothing, or with the
    public development passphrase where it does not belong; True when the development passphrase
    is to be used (none given, local file backend, not CI); False when nothing is to be added.

    An empty PULUMI_CONFIG_PASSPHRASE is what a missing CI secret (or a fork's pull request) looks
    like: Pulumi would encrypt with the empty string, so it is an error, not "unset".  The development
    passphrase is published in this repository, so it is refused for any backend but file:// and
    whenever CI is set, unless VIRTSTACK_ALLOW_DEV_PASSPHRASE=1 says it is meant.
    """
    passphrase = environ.get("PULUMI_CONFIG_PASSPHRASE")
    passphrase_file = environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    given: str | None = passphrase
    if passphrase_file:
        try:
            from_file = Path(passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as err:
            raise SettingsError(
                f"PULUMI_CONFIG_PASSPHRASE_FILE={passphrase_file} cannot be read: {err.strerror}"
            ) from None
        if not from_file:
            raise SettingsError(f"PULUMI_CONFIG_PASSPHRASE_FILE={passphrase_file} is empty")
        given = from_file if passphrase is None else passphrase
    if given is not None and not given:
        raise SettingsError(
            "PULUMI_CONFIG_PASSPHRASE is set but empty (a missing CI secret?); set the stack's passphrase, "
            "or unset it to use the local development passphrase on this machine's file backend"
        )
    if given is not None and given != LOCAL_DEV_PASSPHRASE:
        return False
    if _flag(environ, "VIRTSTACK_ALLOW_DEV_PASSPHRASE"):
        return given is None
    if given is None and not backend_url.startswith("file://"):
        # Other backends can keep secrets without a passphrase (Pulumi Cloud, a KMS): add nothing;
        # Pulumi asks for one itself if the stack uses a passphrase.
        return False
    where = None
    if not backend_url.startswith("file://"):
        where = f"the backend {backend_url.split('://', 1)[0]}://… is not a local file backend"
    elif _flag(environ, "CI"):
        where = "CI is set"
    if where is not None:
        what = (
            "no PULUMI_CONFIG_PASSPHRASE is set"
            if given is None
            else "PULUMI_CONFIG_PASSPHRASE is the public development passphrase"
        )
        raise SettingsError(
            f"{what} and {where}: set the stack's own passphrase "
            "(or VIRTSTACK_ALLOW_DEV_PASSPHRASE=1 for throw-away test stacks)"
        )
    return given is None


@dataclass(frozen=True)
class Settings:
    """What the environment says, with the defaults filled in.  Each field names its variable."""

    root: Path  # VIRTSTACK_ROOT
    cache: Path  # VIRTSTACK_CACHE
    pulumi_version: str  # VIRTSTACK_PULUMI_VERSION, else tools/pulumi/go.mod
    toolchain: Path  # VIRTSTACK_TOOLCHAIN: where `make setup` puts the CLI it built
    pulumi_home: Path  # PULUMI_HOME
    backend_url: str  # PULUMI_BACKEND_URL
    provider_threads: int  # VIRTSTACK_PROVIDER_THREADS: operations one provider process serves at once
    connections_per_host: int  # VIRTSTACK_CONNECTIONS_PER_HOST: libvirt connections per URI
    parallel: int  # PULUMI_PARALLEL: operations the engine runs at once (default: provider_threads)
    connect_timeout: float  # VIRTSTACK_CONNECT_TIMEOUT: seconds an open may take before a host is hung
    no_trash: bool  # VIRTSTACK_NO_TRASH (`--no-trash`): delete disks outright
    engine_full_up: bool  # VIRTSTACK_ENGINE_FULL_UP: Stack.up()'s follow-up reads too (bench baseline)
    # VIRTSTACK_BASELINE_FIXED_COST: issue 15's fixed-cost cuts turned back (bench baseline): `pulumi
    # version` and `pulumi stack select` before every command's engine runs, `up`'s check of its VMs
    # watching each for the settle window after the apply, not after the VM's own start, and the
    # program importing the pulumi-libvirt SDK in every run
    baseline_fixed_cost: bool

    @property
    def shared_backend(self) -> bool:
        """State other machines use too (postgres://, object stores, a Pulumi Cloud): its locks are
        named, never removed (virtstack.locks)."""
        return not self.backend_url.startswith("file://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, root: Path | None = None) -> Settings:
        """Raises SettingsError (one line naming the variable) for a value that cannot be used."""
        env = os.environ if environ is None else environ
        base = root or Path(env.get("VIRTSTACK_ROOT") or PACKAGE_ROOT)
        cache = Path(env.get("VIRTSTACK_CACHE") or "/var/cache/virtstack")
        version = env.get("VIRTSTACK_PULUMI_VERSION") or ""
        if not version:
            try:
                version = pulumi_version()
            except SettingsError:  # installed without tools/ (the provider needs no toolchain)
                version = "unknown"
        threads = int(_number(env, "VIRTSTACK_PROVIDER_THREADS", DEFAULT_PROVIDER_THREADS))
        return cls(
            root=base,
            cache=cache,
            pulumi_version=version,
            toolchain=Path(env.get("VIRTSTACK_TOOLCHAIN") or cache / "toolchain" / f"pulumi-{version}"),
            pulumi_home=Path(env.get("PULUMI_HOME") or base / ".virtstack" / "pulumi-home"),
            backend_url=env.get("PULUMI_BACKEND_URL") or f"file://{base / '.virtstack' / 'state'}",
            provider_threads=threads,
            connections_per_host=int(
                _number(env, "VIRTSTACK_CONNECTIONS_PER_HOST", DEFAULT_CONNECTIONS_PER_HOST)
            ),
            parallel=int(_number(env, "PULUMI_PARALLEL", threads)),
            connect_timeout=_number(env, "VIRTSTACK_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT, float),
            no_trash=_flag(env, "VIRTSTACK_NO_TRASH"),
            engine_full_up=_flag(env, "VIRTSTACK_ENGINE_FULL_UP"),
            baseline_fixed_cost=_flag(env, "VIRTSTACK_BASELINE_FIXED_COST"),
        )

    def _variables(self) -> dict[str, str]:
        return {
            "VIRTSTACK_ROOT": str(self.root),
            "VIRTSTACK_CACHE": str(self.cache),
            "VIRTSTACK_PULUMI_VERSION": self.pulumi_version,
            "VIRTSTACK_TOOLCHAIN": str(self.toolchain),
            "PULUMI_HOME": str(self.pulumi_home),
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_PARALLEL": str(self.parallel),
            **_FIXED,
        }

    def _path(self, path: str, always_toolchain: bool) -> str:
        """PATH with the project's .venv/bin first and the built toolchain last (a `pulumi` already
        on PATH wins); `always_toolchain` False: the toolchain only when no `pulumi` is found."""
        parts = path.split(os.pathsep) if path else []
        venv_bin = str(self.root / ".venv" / "bin")
        if (self.root / ".venv" / "bin").is_dir() and venv_bin not in parts:
            parts.insert(0, venv_bin)
        tool_bin = str(self.toolchain / "bin")
        found = shutil.which("pulumi", path=os.pathsep.join(parts))
        if tool_bin not in parts and (always_toolchain or found is None):
            parts.append(tool_bin)
        return os.pathsep.join(parts)

    def engine_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Variables to add to the environment of an engine run: those `environ` does not set (a
        value the caller set always wins), the development passphrase where check_passphrase allows
        it, the trash switch, and PATH with the virtualenv and the toolchain.  Raises SettingsError
        for a backend URL or passphrase that cannot be used."""
        check_backend_url(self.backend_url)
        env = {k: v for k, v in self._variables().items() if not environ.get(k) and k != "VIRTSTACK_ROOT"}
        for key in ("VIRTSTACK_ROOT", "VIRTSTACK_CACHE", "VIRTSTACK_PULUMI_VERSION", "VIRTSTACK_TOOLCHAIN"):
            env.pop(key, None)  # the engine and its plugins do not read these
        if self.no_trash:  # `--no-trash`: the provider reads it (virtstack.provider.trash)
            env["VIRTSTACK_NO_TRASH"] = environ.get("VIRTSTACK_NO_TRASH") or "1"
        if check_passphrase(environ, self.backend_url):
            env["PULUMI_CONFIG_PASSPHRASE"] = LOCAL_DEV_PASSPHRASE
        path = environ.get("PATH", "")
        new_path = self._path(path, always_toolchain=False)
        if new_path != path:
            env["PATH"] = new_path
        return env

    def shell_exports(self, environ: Mapping[str, str]) -> list[str]:
        """`export` lines for scripts/env.sh: every variable (values the caller set kept), PATH, and
        the development passphrase where check_passphrase allows it.  A passphrase setting it refuses
        exports no passphrase: the shell carries on and virtstack names the problem when it runs."""
        values = {k: environ.get(k) or v for k, v in self._variables().items()}
        values["PATH"] = self._path(environ.get("PATH", ""), always_toolchain=True)
        try:
            if check_passphrase(environ, self.backend_url):
                values["PULUMI_CONFIG_PASSPHRASE"] = LOCAL_DEV_PASSPHRASE
        except SettingsError:
            pass
        return [f"export {key}={shlex.quote(value)}" for key, value in values.items()]


def main(argv: list[str]) -> int:
    if argv != ["--shell"]:
        print("usage: python3 -m virtstack.settings --shell", file=sys.stderr)
        return 2
    try:
        print("\n".join(Settings.from_env().shell_exports(os.environ)))
    except SettingsError as err:
        print(f"virtstack: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
