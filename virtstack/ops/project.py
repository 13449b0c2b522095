"""Where the project is, which stack file a stack uses, and the environment the engine runs in.

Public API:
    Project(root)                     -- the directory holding Pulumi.yaml and __main__.py.
        .spec_file(stack) -> SpecFile -- the stack file the program will load for `stack`.
        .log_dir                      -- where log files go (VIRTSTACK_LOG_DIR or .virtstack/logs).
    find_project(environ, cwd) -> Project
    default_stack(environ) -> str     -- VIRTSTACK_STACK, else "dev".
    engine_env(project, environ) -> dict[str, str]
        The variables scripts/env.sh sets, for those the caller's environment does not set already —
        including the documented local development passphrase when neither PULUMI_CONFIG_PASSPHRASE
        nor PULUMI_CONFIG_PASSPHRASE_FILE is set, the backend is a local file one and CI is not set
        (see check_passphrase; an unusable passphrase setting raises VirtstackError).
    check_passphrase(environ, backend_url) -> bool
    ensure_state_dir(project, backend_url)   -- a file backend's directory, 0700
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from virtstack.errors import VirtstackError
from virtstack.provider import PROVIDER_THREADS
from virtstack.spec.yamldoc import parse_yaml

__all__ = [
    "LOCAL_DEV_PASSPHRASE",
    "Project",
    "SpecFile",
    "check_passphrase",
    "default_stack",
    "engine_env",
    "ensure_state_dir",
    "find_project",
    "toolchain_bin",
]

# The documented local development passphrase (README, scripts/env.sh); never for real secrets.
LOCAL_DEV_PASSPHRASE = "virtstack-local-dev"
DEFAULT_STACK = "dev"
DEFAULT_PULUMI_VERSION = "3.274.1"


@dataclass(frozen=True)
class SpecFile:
    """A stack file: where it is, and how to name it in messages (as the user wrote it)."""

    path: Path
    display: str


@dataclass(frozen=True)
class Project:
    root: Path
    log_dir_override: Path | None = None

    @property
    def log_dir(self) -> Path:
        return self.log_dir_override or self.root / ".virtstack" / "logs"

    def stack_config(self, stack: str) -> dict[str, object]:
        """The stack's settings file (Pulumi.<stack>.yaml) `config` section; empty when absent."""
        path = self.root / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"  # org/project/stack: last part
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as err:
            raise VirtstackError(f"cannot read {path.name}: {err}") from None
        # The stack file's reader: a settings file comes through pull requests too, and
        # yaml.safe_load let `!!int abc` out as a ValueError; errors are one located line.
        data, _ = parse_yaml(text, path.name)
        config = data.get("config") if isinstance(data, dict) else None
        return dict(config) if isinstance(config, dict) else {}

    def spec_file(self, stack: str) -> SpecFile:
        """What __main__.py loads: config `virtstack:spec` if set, else stacks/<stack>.yaml."""
        configured = self.stack_config(stack).get("virtstack:spec")
        if isinstance(configured, str) and configured:
            path = Path(configured)
            return SpecFile(path if path.is_absolute() else self.root / path, configured)
        display = f"stacks/{stack}.yaml"
        return SpecFile(self.root / display, display)


def _is_project(path: Path) -> bool:
    return (path / "Pulumi.yaml").is_file() and (path / "__main__.py").is_file()


def find_project(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Project:
    """VIRTSTACK_ROOT, else the nearest directory upwards from `cwd` holding the program, else the
    checkout this package was installed from (editable install)."""
    environ = os.environ if environ is None else environ
    log_dir = Path(environ["VIRTSTACK_LOG_DIR"]) if environ.get("VIRTSTACK_LOG_DIR") else None
    explicit = environ.get("VIRTSTACK_ROOT")
    if explicit:
        root = Path(explicit).resolve()
        if not _is_project(root):
            raise VirtstackError(
                f"VIRTSTACK_ROOT={explicit} does not hold the virtstack program (Pulumi.yaml)"
            )
        return Project(root, log_dir)
    here = (cwd or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if _is_project(candidate):
            return Project(candidate, log_dir)
    installed = Path(__file__).resolve().parents[2]
    if _is_project(installed):
        return Project(installed, log_dir)
    raise VirtstackError(
        "cannot find the virtstack project (Pulumi.yaml); run from its directory or set VIRTSTACK_ROOT"
    )


def default_stack(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("VIRTSTACK_STACK") or DEFAULT_STACK


def toolchain_bin(environ: Mapping[str, str]) -> Path:
    """Where `make setup` puts the Pulumi CLI it built (scripts/env.sh's VIRTSTACK_TOOLCHAIN)."""
    if environ.get("VIRTSTACK_TOOLCHAIN"):
        return Path(environ["VIRTSTACK_TOOLCHAIN"]) / "bin"
    cache = environ.get("VIRTSTACK_CACHE") or "/var/cache/virtstack"
    version = environ.get("VIRTSTACK_PULUMI_VERSION") or DEFAULT_PULUMI_VERSION
    return Path(cache) / "toolchain" / f"pulumi-{version}" / "bin"


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


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
    if passphrase_file:
        try:
            from_file: str | None = Path(passphrase_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as err:
            raise VirtstackError(
                f"PULUMI_CONFIG_PASSPHRASE_FILE={passphrase_file} cannot be read: {err.strerror}"
            ) from None
        if not from_file:
            raise VirtstackError(f"PULUMI_CONFIG_PASSPHRASE_FILE={passphrase_file} is empty")
        given = from_file if passphrase is None else passphrase
    elif passphrase is not None:
        given = passphrase
    else:
        given = None
    if given is not None and not given:
        raise VirtstackError(
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
        raise VirtstackError(
            f"{what} and {where}: set the stack's own passphrase "
            "(or VIRTSTACK_ALLOW_DEV_PASSPHRASE=1 for throw-away test stacks)"
        )
    return given is None


def ensure_state_dir(project: Project, backend_url: str) -> None:
    """Create a local file backend's directory readable by its owner only (0700): it holds every
    stack's state, whose secrets are only as safe as the passphrase.  The project's own default
    directory is tightened when it exists already (older setups made it 0755); a directory the user
    configured elsewhere (shared between users, say) keeps the permissions its owner gave it."""
    if not backend_url.startswith("file://"):
        return
    path = Path(urlsplit(backend_url).path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.resolve() == (project.root / ".virtstack" / "state").resolve():
            path.chmod(0o700)
    except OSError as err:
        raise VirtstackError(f"cannot create the state directory {path}: {err.strerror}") from None


# Resource operations the engine runs at once: as many as the provider does (PROVIDER_THREADS), which
# libvirtd can serve on its connections per host.  The engine's default is 4 x cores (8 on two cores);
# `make bench` measured 16 faster for 25 VMs.
ENGINE_PARALLEL = PROVIDER_THREADS


def engine_env(project: Project, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables to add to the environment of every engine run (see scripts/env.sh).

    Only variables the caller has not set are returned, so `. scripts/env.sh` or a CI job's own
    settings (another backend, a real passphrase) always win.
    """
    environ = os.environ if environ is None else environ
    root = project.root
    defaults = {
        "PULUMI_HOME": str(root / ".virtstack" / "pulumi-home"),
        "PULUMI_BACKEND_URL": f"file://{root / '.virtstack' / 'state'}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "false",
        "PULUMI_PARALLEL": str(ENGINE_PARALLEL),
        # The provider forks libvirt's ssh child; gRPC's fork handlers running in it broke qemu+ssh
        # opens now and then (virtstack/provider/connection.py, _open).
        "GRPC_ENABLE_FORK_SUPPORT": "false",
    }
    env = {key: value for key, value in defaults.items() if not environ.get(key)}
    if environ.get("VIRTSTACK_NO_TRASH"):  # `--no-trash`: the provider reads it (virtstack.provider.trash)
        env["VIRTSTACK_NO_TRASH"] = environ["VIRTSTACK_NO_TRASH"]
    backend = environ.get("PULUMI_BACKEND_URL") or env["PULUMI_BACKEND_URL"]
    if check_passphrase(environ, backend):
        env["PULUMI_CONFIG_PASSPHRASE"] = LOCAL_DEV_PASSPHRASE
    path = environ.get("PATH", "")
    parts = path.split(os.pathsep) if path else []
    venv_bin = str(root / ".venv" / "bin")
    if (root / ".venv" / "bin").is_dir() and venv_bin not in parts:
        parts.insert(0, venv_bin)
    if shutil.which("pulumi", path=os.pathsep.join(parts)) is None:
        parts.append(str(toolchain_bin(environ)))
    new_path = os.pathsep.join(parts)
    if new_path != path:
        env["PATH"] = new_path
    return env
