"""The "before" of the provisioning optimisation: a copy of the project (program, components, virtstack)
with that optimisation turned back, so before and after run alternately in one bench run on the same
code otherwise.

The optimisation is two constants (see virtstack/provider/__init__.py and connection.py):
PROVIDER_THREADS (16; before: 4 — the dynamic-provider server's own pool, i.e. no widening) and
CONNECTIONS_PER_HOST (3; before: 1 — one shared connection per URI).
The copy runs because the program and the provider process put the project directory first on
sys.path, ahead of the editable install.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from bench.specs import PROJECT_ROOT

BEFORE = {
    "virtstack/provider/__init__.py": ("PROVIDER_THREADS", "4"),
    "virtstack/provider/connection.py": ("CONNECTIONS_PER_HOST", "1"),
}


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
    for rel, (const, value) in BEFORE.items():
        path = root / rel
        text = path.read_text()
        new, count = re.subn(rf"^{const} = \d+", f"{const} = {value}", text, flags=re.M)
        if count != 1:
            notes.append(f"{rel}: {const} not found, nothing turned back there")
            continue
        path.write_text(new)
        notes.append(f"{const} = {value}")
    return root, notes


def remove_baseline(root: Path) -> None:
    if root.name.startswith("vsb-before-"):
        shutil.rmtree(root, ignore_errors=True)
