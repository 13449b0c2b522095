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
    check_passphrase(environ, backend_url) -> bool  -- re-exported from virtstack.settings
    ensure_state_dir(project, backend_url)   -- a file backend's directory, 0700
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from virtstack.errors import VirtstackError
from virtstack.settings import LOCAL_DEV_PASSPHRASE, Settings, check_passphrase
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

DEFAULT_STACK = "dev"


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
    """Where `make setup` puts the Pulumi CLI it built (virtstack.settings: VIRTSTACK_TOOLCHAIN)."""
    return Settings.from_env(environ).toolchain / "bin"


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


def engine_env(project: Project, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables to add to the environment of every engine run (virtstack.settings assembles them).

    Only variables the caller has not set are returned, so `. scripts/env.sh` or a CI job's own
    settings (another backend, a real passphrase) always win.
    """
    environ = os.environ if environ is None else environ
    return Settings.from_env(environ, root=project.root).engine_env(environ)
