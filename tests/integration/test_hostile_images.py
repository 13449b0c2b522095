"""Hostile image sources end with one clean line from the real `pulumi up`, before any libvirt call
(issue 11, "Escapes"): a host file as a raw disk, a qcow2 whose backing file is a host file, a qcow2
declared raw.  The program's checks run in the real engine's Python program, with the real qemu-img."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.realenv import PROJECT_ROOT, PulumiProject, libvirt_inventory, local_spec


def qcow2(path: Path, backing: Path | None = None) -> Path:
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-b", str(backing), "-F", "raw"]
    subprocess.run([*args, str(path), "1M"], check=True)
    return path


@pytest.mark.parametrize("case", ["host file", "backing file", "disguised format"])
def test_a_hostile_image_stops_up_before_any_libvirt_call(
    tmp_path: Path, real_parts: None, case: str
) -> None:
    prefix = f"vsh{secrets.token_hex(3)}"
    images = tmp_path / "images"
    images.mkdir()
    host_secret = tmp_path / "host-secret"
    host_secret.write_bytes(b"host secret, test-only\n" * 64)
    if case == "host file":
        image, expected = {"source": str(host_secret), "format": "raw"}, "outside the image directories"
    elif case == "backing file":
        source = qcow2(images / "overlay.qcow2", backing=host_secret)
        image, expected = {"source": str(source)}, f"has a backing file ({host_secret})"
    else:
        source = qcow2(images / "disk.raw")
        image, expected = {"source": str(source)}, "a qcow2 image, not raw as declared"
    spec = local_spec(prefix, secrets.randbelow(200) + 20)
    spec["images"] = {"evil": image}
    spec["vms"] = {f"{prefix}-vm": {"image": "evil", "vcpus": 1, "memory": "256MiB", "disk": "1GiB"}}
    spec_file = tmp_path / "stack.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    project = PulumiProject(stack=prefix, backend=tmp_path / "state", spec_file=spec_file)
    project.extra_env = {"VIRTSTACK_IMAGE_DIRS": f"{images}:{PROJECT_ROOT / '.virtstack/images'}"}
    project.init()
    try:
        result = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert result.returncode != 0
        # The engine repeats a program's error (progress line, diagnostics); each is the same one line.
        lines = {
            line.split(" error: ", 1)[-1].strip()
            for line in result.stdout.splitlines()
            if "images.evil" in line
        }
        assert len(lines) == 1, result.stdout[-3000:]
        [line] = lines
        assert line.startswith(f"{spec_file}: images.evil.source: ") and expected in line, line
        assert "Traceback" not in result.stdout + result.stderr
        assert libvirt_inventory(prefix) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    finally:
        project.remove()
