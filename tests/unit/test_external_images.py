"""`external: true` images: an existing volume shared by several stacks, checked and used, never uploaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtstack.edge import resolve_images
from virtstack.errors import SpecError
from virtstack.images import check_image_locations
from virtstack.spec.loader import parse_spec

HOST = """
hosts:
  a:
    uri: qemu:///system
    capacity: {vcpus: 2, memory: 2GiB, disk: 20GiB}
    pools: {vms: {path: /var/lib/x}}
"""


def spec_with(image: str) -> str:
    return HOST + f"images:\n  golden: {image}\n"


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        (
            "{source: /srv/golden.qcow2, external: true}",
            "images.golden.source: an external image is a volume name",
        ),
        (
            "{source: 'https://x.example/g.qcow2', external: true}",
            "images.golden.source: an external image is a volume name",
        ),
        (
            "{source: golden.qcow2, external: true, sha256: " + "a" * 64 + "}",
            "images.golden.sha256: only for https sources",
        ),
        ("{source: golden.img, external: true}", "images.golden.format: required"),
    ],
)
def test_an_external_image_names_a_volume(image: str, problem: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec_with(image), "s.yaml")
    assert problem in str(err.value)


def test_an_external_image_is_neither_a_file_to_find_nor_one_to_upload(tmp_path: Path) -> None:
    spec = parse_spec(spec_with("{source: golden.qcow2, external: true}"), "s.yaml")
    check_image_locations(spec, tmp_path, "s.yaml", {})  # no file in the image directories: fine
    resolved = resolve_images(spec, tmp_path, "s.yaml", {"golden"}, {})["golden"]
    assert (resolved.source, resolved.format, resolved.external) == ("golden.qcow2", "qcow2", True)
    other = parse_spec(spec_with("{source: other.qcow2, external: true}"), "s.yaml")
    assert (
        resolve_images(other, tmp_path, "s.yaml", {"golden"}, {})["golden"].fingerprint
        != resolved.fingerprint
    )
