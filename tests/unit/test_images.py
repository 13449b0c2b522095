"""Image sources are made safe before any libvirt call (virtstack.images via edge.resolve_images):
only files from the image directories, https downloads pinned by sha256 (against a real HTTPS server
on 127.0.0.1 with a certificate made here), the real format checked with the real qemu-img, no
backing files (issue 11, "Escapes")."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from virtstack.edge import resolve_images
from virtstack.errors import SpecError
from virtstack.spec import StackSpec
from virtstack.spec.loader import parse_spec

F = "stacks/x.yaml"
QEMU_IMG = shutil.which("qemu-img") or "qemu-img"


HOSTS = {
    "h": {
        "uri": "test:///default",
        "capacity": {"vcpus": 2, "memory": "2GiB", "disk": "10GiB"},
        "pools": {"vms": {"path": "/var/lib/virtstack/pools/x"}},
    }
}


def spec(**image: Any) -> StackSpec:
    return StackSpec.model_validate({"hosts": HOSTS, "images": {"img": image}})


def resolve(root: Path, env: dict[str, str], **image: Any) -> str:
    """The resolved source, or the error lines."""
    try:
        return resolve_images(spec(**image), root, F, {"img"}, env)["img"].source
    except SpecError as err:
        return str(err)


def qcow2(path: Path, backing: Path | None = None) -> Path:
    args = [QEMU_IMG, "create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-b", str(backing), "-F", "raw"]
    subprocess.run([*args, str(path), "1M"], check=True)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / ".virtstack" / "images").mkdir(parents=True)
    return tmp_path


def env_for(root: Path, **extra: str) -> dict[str, str]:
    return {"VIRTSTACK_CACHE": str(root / "cache"), "PATH": os.environ.get("PATH", ""), **extra}


def test_images_from_the_image_directories_resolve(project: Path) -> None:
    img = qcow2(project / "images" / "a.qcow2")
    assert resolve(project, env_for(project), source="images/a.qcow2") == str(img)
    raw = project / ".virtstack" / "images" / "b.raw"
    raw.write_bytes(b"\0" * 4096)
    assert resolve(project, env_for(project), source=str(raw)) == str(raw)


def test_a_host_file_outside_the_image_directories_is_refused(project: Path) -> None:
    # The reported escape: source: /etc/shadow with format: raw was uploaded as a guest disk.
    secret = project / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- test-only\n")
    message = resolve(project, env_for(project), source=str(secret), format="raw")
    assert message.startswith(f"{F}: images.img.source: {secret}: outside the image directories")
    assert "VIRTSTACK_IMAGE_DIRS" in message
    message = resolve(project, env_for(project), source="/etc/passwd", format="raw")
    assert "outside the image directories" in message


def test_symlinks_are_resolved_before_the_check(project: Path) -> None:
    secret = project / "secret.raw"
    secret.write_bytes(b"\0" * 512)
    (project / "images" / "innocent.raw").symlink_to(secret)
    (project / "images" / "up").symlink_to(project)
    message = resolve(project, env_for(project), source="images/innocent.raw")
    assert f"images/innocent.raw: resolves to {secret}, outside the image directories" in message
    message = resolve(project, env_for(project), source="images/up/secret.raw")
    assert f"images/up/secret.raw: resolves to {secret}, outside the image directories" in message


def test_the_image_directories_are_configurable(project: Path) -> None:
    other = project / "srv"
    other.mkdir()
    img = qcow2(other / "c.qcow2")
    env = env_for(project, VIRTSTACK_IMAGE_DIRS=f"srv{os.pathsep}/nonexistent")
    assert resolve(project, env, source=str(img)) == str(img)
    # ... and then the defaults no longer apply.
    qcow2(project / "images" / "a.qcow2")
    assert "outside the image directories" in resolve(project, env, source="images/a.qcow2")


def test_the_real_format_must_be_the_declared_one(project: Path) -> None:
    qcow2(project / "images" / "disguised.raw")
    message = resolve(project, env_for(project), source="images/disguised.raw")
    assert message.endswith("images/disguised.raw: a qcow2 image, not raw as declared")
    (project / "images" / "plain.qcow2").write_bytes(b"\0" * 4096)
    assert resolve(project, env_for(project), source="images/plain.qcow2").endswith(
        "a raw image, not qcow2 as declared"
    )


def test_an_image_with_a_backing_file_is_refused(project: Path) -> None:
    # A qcow2 inside the image directory whose backing file is a host file outside it.
    outside = project / "host-secret"
    outside.write_bytes(b"secret test-only\n" * 100)
    qcow2(project / "images" / "overlay.qcow2", backing=outside)
    message = resolve(project, env_for(project), source="images/overlay.qcow2")
    assert f"has a backing file ({outside})" in message


def test_a_missing_file_is_reported(project: Path) -> None:
    assert resolve(project, env_for(project), source="images/nope.qcow2") == (
        f"{F}: images.img.source: images/nope.qcow2: file not found"
    )


# ------------------------------------------------------------------ https


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (TEST-ONLY key), made with openssl."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1",
            "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return d / "cert.pem", d / "key.pem"


class Server:
    def __init__(self, root: Path, cert: Path, key: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()


@pytest.fixture
def server(tmp_path: Path, tls: tuple[Path, Path]) -> Iterator[Server]:
    (tmp_path / "www").mkdir()
    srv = Server(tmp_path / "www", *tls)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_https_images_are_downloaded_once_and_verified(
    project: Path, server: Server, tls: tuple[Path, Path]
) -> None:
    img = qcow2(project / "www" / "cloud.qcow2")
    digest = hashlib.sha256(img.read_bytes()).hexdigest()
    env = env_for(project, VIRTSTACK_CA_FILE=str(tls[0]))
    url = f"{server.url}/cloud.qcow2"
    first = resolve(project, env, source=url, sha256=digest)
    assert first == str(project / "cache" / "images" / f"{digest}.img")
    assert Path(first).read_bytes() == img.read_bytes()
    assert resolve(project, env, source=url, sha256=digest) == first
    assert server.requests == ["/cloud.qcow2"]  # the second run used the cache


def test_a_download_with_another_digest_is_refused_and_not_kept(
    project: Path, server: Server, tls: tuple[Path, Path]
) -> None:
    qcow2(project / "www" / "cloud.qcow2")
    env = env_for(project, VIRTSTACK_CA_FILE=str(tls[0]))
    message = resolve(project, env, source=f"{server.url}/cloud.qcow2", sha256="0" * 64)
    assert "has SHA-256" in message and f"not the sha256 given ({'0' * 64})" in message
    assert list((project / "cache" / "images").iterdir()) == []


def test_an_untrusted_certificate_is_refused(project: Path, server: Server) -> None:
    qcow2(project / "www" / "cloud.qcow2")
    message = resolve(project, env_for(project), source=f"{server.url}/cloud.qcow2", sha256="0" * 64)
    assert "cannot download" in message and "CERTIFICATE_VERIFY_FAILED" in message
    assert server.requests == []


def test_a_downloaded_image_is_inspected_too(project: Path, server: Server, tls: tuple[Path, Path]) -> None:
    data = qcow2(project / "www" / "cloud.img").read_bytes()
    env = env_for(project, VIRTSTACK_CA_FILE=str(tls[0]))
    digest = hashlib.sha256(data).hexdigest()
    message = resolve(project, env, source=f"{server.url}/cloud.img", sha256=digest, format="raw")
    assert message.endswith("a qcow2 image, not raw as declared")


@pytest.mark.parametrize(
    ("image", "line"),
    [
        # The reported gap: an http:// image was accepted with no checksum.
        (
            {"source": "http://e.org/a.qcow2"},
            "images.img.source: plain http is not supported: use an https URL",
        ),
        ({"source": "https://e.org/a.qcow2"}, "images.img.sha256: required for https sources"),
        ({"source": "https://e.org/a.qcow2", "sha256": "abc"}, "images.img.sha256: must be a SHA-256 digest"),
        ({"source": "images/a.qcow2", "sha256": "a" * 64}, "images.img.sha256: only for https sources"),
    ],
)
def test_url_sources_need_https_and_sha256(image: dict[str, Any], line: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(yaml.safe_dump({"hosts": HOSTS, "images": {"img": image}}), F)
    [only] = str(err.value).splitlines()
    assert only.startswith(f"{F}: {line}")


def test_a_download_stops_at_the_size_limit(project: Path, server: Server, tls: tuple[Path, Path]) -> None:
    (project / "www" / "big.img").write_bytes(b"\0" * (3 << 20))
    env = env_for(project, VIRTSTACK_CA_FILE=str(tls[0]), VIRTSTACK_MAX_IMAGE_BYTES=str(2 << 20))
    message = resolve(project, env, source=f"{server.url}/big.img", sha256="0" * 64, format="raw")
    assert message.endswith(f"larger than {2 << 20} bytes (VIRTSTACK_MAX_IMAGE_BYTES)")
    assert list((project / "cache" / "images").iterdir()) == []


def test_validate_refuses_a_host_file_as_image_in_one_line(tmp_path: Path) -> None:
    # The reported escape passed `virtstack validate`; now validate says so, with the location.
    from click.testing import CliRunner

    from virtstack.cli.common import Services
    from virtstack.cli.main import cli
    from virtstack.ops.project import Project

    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: virtstack\nruntime: python\n")
    (root / "__main__.py").write_text("")
    stack = {"hosts": HOSTS, "images": {"img": {"source": "/etc/shadow", "format": "raw"}}}
    (root / "stacks" / "dev.yaml").write_text(yaml.safe_dump(stack))
    services = Services(environ={}, project_factory=lambda env: Project(root, root / "logs"))
    result = CliRunner().invoke(cli, ["validate", "-s", "dev"], obj=services)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("stacks/dev.yaml: images.img.source: /etc/shadow: outside the image directories (")
    stack["images"] = {"img": {"source": "images/a.qcow2"}}
    (root / "stacks" / "dev.yaml").write_text(yaml.safe_dump(stack))
    result = CliRunner().invoke(cli, ["validate", "-s", "dev"], obj=services)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        # Not HTTP at all: http.client raises BadStatusLine, which is no OSError.
        (b"SSH-2.0-not-http\r\n\r\n", "cannot download: "),
        # Fewer bytes than promised: only the digest tells.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10, "the download has SHA-256 "),
    ],
)
def test_a_broken_server_is_one_clean_error(
    project: Path, tls: tuple[Path, Path], reply: bytes, expected: str
) -> None:
    import socket as socketlib

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls)
    listener = socketlib.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls_conn:
            tls_conn.recv(65536)
            tls_conn.sendall(reply)

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    try:
        env = env_for(project, VIRTSTACK_CA_FILE=str(tls[0]))
        message = resolve(
            project, env, source=f"https://127.0.0.1:{port}/a.img", sha256="0" * 64, format="raw"
        )
        assert message.startswith(f"{F}: images.img.source: https://127.0.0.1:{port}/a.img: {expected}")
        assert list((project / "cache" / "images").iterdir()) == []
    finally:
        thread.join(timeout=10)
        listener.close()


def test_a_symlink_loop_is_a_clean_error(project: Path) -> None:
    (project / "images" / "loop.qcow2").symlink_to(project / "images" / "loop.qcow2")
    assert resolve(project, env_for(project), source="images/loop.qcow2") == (
        f"{F}: images.img.source: images/loop.qcow2: file not found"
    )
    from virtstack.images import check_image_locations

    with pytest.raises(SpecError) as err:
        check_image_locations(spec(source="images/loop.qcow2"), project, F, env_for(project))
    assert (
        str(err.value) == f"{F}: images.img.source: images/loop.qcow2: cannot be resolved (a symlink loop?)"
    )
