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
        nor PULUMI_CONFIG_PASSPHRASE_FILE is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from virtstack.errors import VirtstackError
from virtstack.provider import PROVIDER_THREADS

__all__ = [
    "LOCAL_DEV_PASSPHRASE",
    "Project",
    "SpecFile",
    "default_stack",
    "engine_env",
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
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, yaml.YAMLError) as err:
            raise VirtstackError(f"cannot read {path.name}: {err}") from None
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
    if not environ.get("PULUMI_CONFIG_PASSPHRASE") and not environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
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
