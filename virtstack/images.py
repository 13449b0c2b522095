"""Image sources a stack file may name, made safe before any libvirt call.

A stack file arrives through pull requests, and an image is uploaded to every host that runs a VM
using it; so a source naming /etc/shadow or a private key would ship that file to a host as a guest
disk.  Hence:

    * local sources only from the image directories (image_dirs: VIRTSTACK_IMAGE_DIRS, os.pathsep
      separated, relative to the project root; default .virtstack/images and images/), symlinks
      resolved before the check;
    * https sources pinned by sha256, downloaded once into the cache (download_dir:
      $VIRTSTACK_CACHE/images) and verified before they are used; VIRTSTACK_CA_FILE names extra
      trusted CA certificates (tests use a self-signed one); at most VIRTSTACK_MAX_IMAGE_BYTES
      (32 GiB) are downloaded;
    * the real format read with `qemu-img info` must be the declared one, and images with a backing
      file or an external data file (which would make qemu read another file of the host) are refused.

Public API:
    image_dirs(project_root, environ) -> list[Path]
    download_dir(environ) -> Path
    check_local_source(path, allowed) -> Path          raises ImageError
    check_image_locations(spec, root, spec_file, environ)  raises SpecError (for `virtstack validate`)
    fetch_https(url, sha256, cache, environ) -> Path   raises ImageError
    inspect_image(path, declared_format) -> None       raises ImageError
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from virtstack.errors import SpecError, SpecIssue
from virtstack.spec import StackSpec

__all__ = [
    "ImageError",
    "check_image_locations",
    "check_local_source",
    "download_dir",
    "fetch_https",
    "image_dirs",
    "inspect_image",
]

DEFAULT_IMAGE_DIRS = (".virtstack/images", "images")
DOWNLOAD_TIMEOUT = 60.0  # seconds without progress, not for the whole file
QEMU_IMG_TIMEOUT = 60.0
DEFAULT_MAX_IMAGE_BYTES = 32 * 1024**3  # far above any cloud image; stops an endless download
_CHUNK = 1 << 20


class ImageError(Exception):
    """One image's source is unusable; the message says why (no location: the caller adds it)."""


def image_dirs(project_root: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The directories local image sources must be in, resolved (symlinks followed)."""
    environ = os.environ if environ is None else environ
    configured = environ.get("VIRTSTACK_IMAGE_DIRS")
    names = [d for d in configured.split(os.pathsep) if d] if configured else list(DEFAULT_IMAGE_DIRS)
    dirs = []
    for name in names:
        path = Path(name)
        dirs.append((path if path.is_absolute() else project_root / path).resolve())
    return dirs


def download_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("VIRTSTACK_CACHE") or "/var/cache/virtstack") / "images"


def check_local_source(path: Path, allowed: list[Path]) -> Path:
    """The resolved file, if it is a regular file inside one of `allowed`."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        raise ImageError("file not found") from None
    if not any(real.is_relative_to(d) for d in allowed):
        where = ", ".join(str(d) for d in allowed)
        what = "outside" if real == path.absolute() else f"resolves to {real}, outside"
        raise ImageError(
            f"{what} the image directories ({where}); put the image there or list its directory in "
            "VIRTSTACK_IMAGE_DIRS"
        )
    if not real.is_file():
        raise ImageError("not a regular file")
    return real


def max_download_bytes(environ: Mapping[str, str]) -> int:
    try:
        return int(environ.get("VIRTSTACK_MAX_IMAGE_BYTES") or DEFAULT_MAX_IMAGE_BYTES)
    except ValueError:
        raise ImageError("VIRTSTACK_MAX_IMAGE_BYTES must be a number of bytes") from None


def check_image_locations(
    spec: StackSpec, project_root: Path, spec_file: str, environ: Mapping[str, str] | None = None
) -> None:
    """`virtstack validate`'s share of the checks: every local image source lies inside the image
    directories (symlinks that exist resolved); raises SpecError listing the others.  Whether the
    files exist, their format and https downloads are checked when a plan or up resolves them."""
    environ = os.environ if environ is None else environ
    allowed = [*image_dirs(project_root, environ), download_dir(environ).resolve()]
    issues = []
    for name, image in spec.images.items():
        if image.is_url or image.external:
            continue  # downloaded later, or a volume on the hosts (checked at plan)
        path = Path(image.source)
        loc = f"images.{name}.source"
        try:
            real = (path if path.is_absolute() else project_root / path).resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop
            issues.append(SpecIssue(spec_file, loc, f"{image.source}: cannot be resolved (a symlink loop?)"))
            continue
        if not any(real.is_relative_to(d) for d in allowed):
            where = ", ".join(str(d) for d in allowed)
            issues.append(
                SpecIssue(
                    spec_file,
                    loc,
                    f"{image.source}: outside the image directories ({where}); put the image there or "
                    "list its directory in VIRTSTACK_IMAGE_DIRS",
                )
            )
    if issues:
        raise SpecError(issues)


def _ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca_file = environ.get("VIRTSTACK_CA_FILE")
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as err:
            raise ImageError(f"cannot load VIRTSTACK_CA_FILE {ca_file}: {err}") from None
    return context


def fetch_https(url: str, sha256: str, cache: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The cached copy of `url`, downloaded now if needed; its SHA-256 must be `sha256`.

    The cache file is named after the digest and only ever created by renaming a verified download,
    so its presence means verified content (no re-hash of a multi-GB file on every preview).
    """
    environ = os.environ if environ is None else environ
    target = cache / f"{sha256}.img"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    context = _ssl_context(environ)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=cache)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "virtstack"})
            with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT, context=context) as response:
                if response.geturl().split(":", 1)[0].lower() != "https":
                    raise ImageError("redirected to a non-https URL")
                limit, size = max_download_bytes(environ), 0
                while chunk := response.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:  # the digest would only fail at the end, after filling the disk
                        raise ImageError(f"larger than {limit} bytes (VIRTSTACK_MAX_IMAGE_BYTES)")
                    digest.update(chunk)
                    out.write(chunk)
        got = digest.hexdigest()
        if got != sha256:
            raise ImageError(f"the download has SHA-256 {got}, not the sha256 given ({sha256})")
        os.chmod(tmp, 0o644)
        tmp.replace(target)
        return target
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise ImageError(f"cannot download: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def inspect_image(path: Path, declared_format: str) -> None:
    """Refuse an image whose real format is not `declared_format`, or which refers to other files."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise ImageError("qemu-img is not installed (run `make setup`); it checks images before use")
    try:
        # --force-share: read even while a VM uses the file.  No -f: qemu-img must *detect* the format
        # (it never opens a backing file for `info`).
        proc = subprocess.run(
            [qemu_img, "info", "--output=json", "--force-share", str(path)],
            capture_output=True,
            text=True,
            timeout=QEMU_IMG_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageError(f"qemu-img info took longer than {QEMU_IMG_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise ImageError(f"qemu-img cannot read it: {lines[-1] if lines else 'failed'}")
    try:
        info = json.loads(proc.stdout)
    except ValueError:
        raise ImageError("qemu-img info printed no JSON") from None
    real_format = info.get("format")
    if real_format != declared_format:
        raise ImageError(f"a {real_format} image, not {declared_format} as declared")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageError(
            f"has a backing file ({info.get('backing-filename')}); images must be self-contained "
            "(flatten it with `qemu-img convert`)"
        )
    data = (info.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        raise ImageError(f"uses an external data file ({data['data-file']}); images must be self-contained")
