"""What the Pulumi program needs from the outside world before it builds the resource graph.

Kept apart from the components (which take resolved values only): the hypervisor decision made by
setup, image files on disk, and the placement recorded by the previous deployment.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from components.libvirt_args import Connection, ResolvedImage
from virtstack.errors import SpecError, SpecIssue
from virtstack.spec import StackSpec

HYPERVISOR_FILE = Path(".virtstack/hypervisor.json")


def is_local_uri(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("qemu", "qemu+unix", "test") and not parts.hostname


def detected_domain_type(project_root: Path) -> tuple[str, str | None]:
    """The domain type (and CPU mode) that setup's probe chose for this machine; TCG if it never ran,
    since TCG works wherever QEMU does."""
    try:
        data = json.loads((project_root / HYPERVISOR_FILE).read_text())
        return str(data["domain_type"]), data.get("cpu_mode")
    except (OSError, ValueError, KeyError):
        return "qemu", None


def resolve_connections(spec: StackSpec, project_root: Path) -> dict[str, Connection]:
    local_type, local_cpu = detected_domain_type(project_root)
    connections = {}
    for name, host in spec.hosts.items():
        domain_type: str
        cpu: str | None
        if host.domain_type != "auto":
            domain_type, cpu = host.domain_type, None
        elif is_local_uri(host.uri):
            domain_type, cpu = local_type, local_cpu
        else:
            domain_type, cpu = "kvm", None  # a remote host was not probed here; KVM is the norm
        connections[name] = Connection(name, host.uri, domain_type, cpu if domain_type == "kvm" else None)
    return connections


def resolve_images(
    spec: StackSpec, project_root: Path, spec_file: str, used: set[str]
) -> dict[str, ResolvedImage]:
    """Absolute sources and content fingerprints of the images VMs use; a missing file is a spec error
    raised before anything is created."""
    resolved, issues = {}, []
    for name, image in spec.images.items():
        if name not in used:
            continue
        if image.is_url:
            fingerprint = hashlib.sha256(image.source.encode()).hexdigest()
            resolved[name] = ResolvedImage(name, image.source, image.disk_format, fingerprint)
            continue
        path = Path(image.source)
        if not path.is_absolute():
            path = project_root / path
        try:
            real = path.resolve(strict=True)
            st = real.stat()
        except OSError:
            issues.append(SpecIssue(spec_file, f"images.{name}.source", f"{image.source}: file not found"))
            continue
        # Path, size and mtime stand in for the content: hashing a 400 MB image on every preview costs
        # seconds, and a rebuilt image gets a new cache path or mtime anyway.
        token = f"{real}:{st.st_size}:{st.st_mtime_ns}"
        fingerprint = hashlib.sha256(token.encode()).hexdigest()
        resolved[name] = ResolvedImage(name, str(real), image.disk_format, fingerprint)
    if issues:
        raise SpecError(issues)
    return resolved


def previous_placement(stack: str, timeout: float = 30.0) -> dict[str, str]:
    """VM → host as the last deployment of `stack` recorded it (its `placement` output), so placement
    keeps existing VMs where they are. Empty for a new stack or when the output cannot be read."""
    try:
        proc = subprocess.run(
            ["pulumi", "stack", "output", "placement", "--json", "--stack", stack],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:
        return {}
    try:
        data = json.loads(proc.stdout or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
