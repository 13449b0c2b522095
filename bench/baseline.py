"""The "before" of the provisioning optimisation: a copy of the project (program, components, virtstack)
with that optimisation turned back, so before and after run alternately in one bench run on the same
code otherwise.

Turned back, each by one textual substitution in the copy (BEFORE):
- PROVIDER_THREADS 16 -> 4: the dynamic-provider server's own pool, i.e. no widening
  (virtstack/provider/__init__.py);
- CONNECTIONS_PER_HOST 3 -> 1: one shared libvirt connection per URI (virtstack/provider/connection.py);
- ENGINE_PARALLEL 16 -> 8: the engine's own default on two cores (virtstack/ops/project.py); the
  before variant also runs with PULUMI_PARALLEL=8, since scripts/env.sh exports 16;
- the apply through Stack.up() again, with the Automation API's follow-up `stack output` x2 and
  `stack history` (virtstack/ops/engine.py).
The program and the provider process put the project directory first on sys.path, ahead of the
editable install; the CLI process gets the copy through PYTHONPATH (`pythonpath()`).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from bench.specs import PROJECT_ROOT

# file -> (what, pattern, replacement)
BEFORE = [
    (
        "virtstack/provider/__init__.py",
        "PROVIDER_THREADS = 4",
        r"^PROVIDER_THREADS = \d+$",
        "PROVIDER_THREADS = 4",
    ),
    (
        "virtstack/provider/connection.py",
        "CONNECTIONS_PER_HOST = 1",
        r"^CONNECTIONS_PER_HOST = \d+$",
        "CONNECTIONS_PER_HOST = 1",
    ),
    ("virtstack/ops/project.py", "ENGINE_PARALLEL = 8", r"^ENGINE_PARALLEL = .+$", "ENGINE_PARALLEL = 8"),
    (
        "virtstack/ops/engine.py",
        "apply through Stack.up()",
        r'self\._run\("up", stack, "apply",',
        'self._run("up", stack, "up",',
    ),
]
ENGINE_PARALLEL_BEFORE = "8"


def make_baseline() -> tuple[Path, list[str]]:
    """(project copy, notes). Notes say what was turned back, or why nothing could be."""
    root = Path(tempfile.mkdtemp(prefix="vsb-before-"))
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    for name in ("components", "virtstack"):
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    (root / ".virtstack").symlink_to(PROJECT_ROOT / ".virtstack")
    notes = []
    for rel, what, pattern, replacement in BEFORE:
        path = root / rel
        text = path.read_text()
        new, count = re.subn(pattern, replacement, text, flags=re.M)
        if count != 1:
            notes.append(f"{rel}: `{pattern}` found {count} times, nothing turned back there")
            continue
        path.write_text(new)
        notes.append(what)
    return root, notes


def pythonpath(root: Path) -> str:
    """PYTHONPATH entry that makes the `virtstack` CLI import the copy's package."""
    return str(root)


def remove_baseline(root: Path) -> None:
    if root.name.startswith("vsb-before-"):
        shutil.rmtree(root, ignore_errors=True)
