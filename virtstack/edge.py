"""What the Pulumi program needs from the outside world before it builds the resource graph.

Kept apart from the components (which take resolved values only): the hypervisor decision made by
setup, image files on disk, and the placement recorded by the previous deployment.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from components.libvirt_args import Connection, ResolvedImage
from virtstack.errors import SpecError, SpecIssue
from virtstack.images import (
    ImageError,
    check_local_source,
    download_dir,
    fetch_https,
    image_dirs,
    inspect_image,
)
from virtstack.settings import PREVIOUS_PLACEMENT_ENV
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
        connections[name] = Connection(
            name,
            host.uri,
            domain_type,
            cpu if domain_type == "kvm" else None,
            boot_concurrency=host.boot_concurrency or 0,
            backend=host.backend,
            cpu=host.cpu,
        )
    return connections


def resolve_images(
    spec: StackSpec,
    project_root: Path,
    spec_file: str,
    used: set[str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, ResolvedImage]:
    """Local files of the images VMs use and their content fingerprints, checked as virtstack.images
    describes (inside the image directories, https downloads verified, real format, no backing
    file); any problem is a spec error raised before anything is created."""
    environ = os.environ if environ is None else environ
    allowed = [*image_dirs(project_root, environ), download_dir(environ).resolve()]
    resolved, issues = {}, []
    for name, image in spec.images.items():
        if name not in used:
            continue
        if image.external:
            # A volume already on the hosts: the provider checks it exists (at preview) and never
            # uploads, changes or deletes it.
            token = hashlib.sha256(f"external:{image.source}".encode()).hexdigest()
            resolved[name] = ResolvedImage(name, image.source, image.disk_format, token, external=True)
            continue
        try:
            if image.is_url:
                if image.sha256 is None:  # pragma: no cover - the spec rejects this
                    raise ImageError("https sources need sha256")
                real = fetch_https(image.source, image.sha256, download_dir(environ), environ)
                # The digest is the content: same sha256, same image everywhere.
                fingerprint = image.sha256
            else:
                path = Path(image.source)
                real = check_local_source(path if path.is_absolute() else project_root / path, allowed)
                st = real.stat()
                # Path, size and mtime stand in for the content: hashing a 400 MB image on every
                # preview costs seconds, and a rebuilt image gets a new cache path or mtime anyway.
                token = f"{real}:{st.st_size}:{st.st_mtime_ns}"
                fingerprint = hashlib.sha256(token.encode()).hexdigest()
            inspect_image(real, image.disk_format)
        except ImageError as err:
            issues.append(SpecIssue(spec_file, f"images.{name}.source", f"{image.source}: {err}"))
            continue
        resolved[name] = ResolvedImage(name, str(real), image.disk_format, fingerprint)
    if issues:
        raise SpecError(issues)
    return resolved


def secrets_dir(project_root: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where password_file names files: VIRTSTACK_SECRETS_DIR, else .virtstack/secrets (untracked)."""
    environ = os.environ if environ is None else environ
    configured = environ.get("VIRTSTACK_SECRETS_DIR")
    path = Path(configured) if configured else Path(".virtstack/secrets")
    return (path if path.is_absolute() else project_root / path).resolve()


def resolve_passwords(
    spec: StackSpec, project_root: Path, spec_file: str, environ: Mapping[str, str] | None = None
) -> StackSpec:
    """The spec with every cloud-init user's password_env / password_file read into `password` (a
    SecretStr: rendered into the user data, which is a Pulumi secret from there on).  A missing
    variable or file is a spec error raised before anything is created."""
    environ = os.environ if environ is None else environ
    base = secrets_dir(project_root, environ)
    issues: list[SpecIssue] = []
    new_vms = {}
    for vm_name, vm in spec.vms.items():
        if vm.cloud_init is None or not any(u.password_env or u.password_file for u in vm.cloud_init.users):
            new_vms[vm_name] = vm
            continue
        users = []
        for i, user in enumerate(vm.cloud_init.users):
            where = f"vms.{vm_name}.cloud_init.users[{i}]"
            value: str | None = None
            if user.password_env is not None:
                value = environ.get(user.password_env)
                if not value:
                    issues.append(
                        SpecIssue(spec_file, f"{where}.password_env", f"{user.password_env} is not set")
                    )
            elif user.password_file is not None:
                path = (base / user.password_file).resolve()
                try:
                    if not path.is_relative_to(base):
                        raise OSError(f"leads outside {base}")
                    value = path.read_text(encoding="utf-8").rstrip("\r\n")
                    if not value:
                        raise OSError("is empty")
                except (OSError, UnicodeDecodeError) as err:
                    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
                    issues.append(SpecIssue(spec_file, f"{where}.password_file", f"{path}: {reason}"))
                    value = None
            if value is None:
                users.append(user)
            else:
                update = {"password": SecretStr(value), "password_env": None, "password_file": None}
                users.append(user.model_copy(update=update))
        cloud_init = vm.cloud_init.model_copy(update={"users": users})
        new_vms[vm_name] = vm.model_copy(update={"cloud_init": cloud_init})
    if issues:
        raise SpecError(issues)
    return spec.model_copy(update={"vms": new_vms})


def previous_placement(
    stack: str, timeout: float = 30.0, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """VM → host as the last deployment of `stack` recorded it (its `placement` output), so placement
    keeps existing VMs where they are. Empty for a new stack or when the output cannot be read.

    `virtstack` reads it once and passes it in VIRTSTACK_PREVIOUS_PLACEMENT; only a raw `pulumi
    preview`/`pulumi up` (without the CLI) makes the program ask `pulumi stack output` itself."""
    environ = os.environ if environ is None else environ
    passed = environ.get(PREVIOUS_PLACEMENT_ENV)
    if passed is not None:
        text = passed
    else:
        try:
            proc = subprocess.run(
                ["pulumi", "stack", "output", "placement", "--json", "--stack", stack],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return {}
        if proc.returncode != 0:
            return {}
        text = proc.stdout
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
