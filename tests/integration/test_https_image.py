"""An https image end to end (issue 11, "Escapes": URL images could not work at all, the provider
called os.path.getsize(url)): served by a real HTTPS server on 127.0.0.1 with a certificate made
here, downloaded once into the cache, verified, uploaded by the real engine as the base volume of a
(stopped) VM, then destroyed."""

from __future__ import annotations

import hashlib
import http.server
import secrets
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import yaml

from tests.integration.realenv import PulumiProject, libvirt_inventory, local_spec


def https_server(root: Path, cert: Path, key: Path, hits: list[str]) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


def test_an_https_image_is_downloaded_once_verified_and_deployed(tmp_path: Path, real_parts: None) -> None:
    www = tmp_path / "www"
    www.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(www / "tiny.qcow2"), "64M"], check=True)
    digest = hashlib.sha256((www / "tiny.qcow2").read_bytes()).hexdigest()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip  # a TEST-ONLY key
    hits: list[str] = []
    httpd = https_server(www, tmp_path / "cert.pem", tmp_path / "key.pem", hits)
    prefix = f"vsu{secrets.token_hex(3)}"
    spec = local_spec(prefix, secrets.randbelow(200) + 20)
    url = f"https://127.0.0.1:{httpd.server_address[1]}/tiny.qcow2"
    spec["images"] = {"tiny": {"source": url, "sha256": digest}}
    spec["vms"] = {
        f"{prefix}-vm": {"image": "tiny", "vcpus": 1, "memory": "256MiB", "disk": "1GiB", "running": False}
    }
    spec_file = tmp_path / "stack.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    project = PulumiProject(stack=prefix, backend=tmp_path / "state", spec_file=spec_file)
    cache = tmp_path / "cache"
    project.extra_env = {
        "VIRTSTACK_CACHE": str(cache),
        "VIRTSTACK_CA_FILE": str(tmp_path / "cert.pem"),
        "VIRTSTACK_NO_TRASH": "1",  # raw `pulumi destroy` would keep the disks in the pool's trash
    }
    project.init()
    try:
        project.pulumi("up", "--yes", "--skip-preview")
        assert (cache / "images" / f"{digest}.img").read_bytes() == (www / "tiny.qcow2").read_bytes()
        inventory = libvirt_inventory(prefix)
        assert inventory["domains"] and inventory["pools"] == [prefix]
        assert len(inventory["volumes"]) >= 2  # the base image and the VM's root disk
        # No changes, and no second download: the verified copy in the cache is used.
        preview = project.pulumi("preview", "--expect-no-changes")
        assert preview.returncode == 0
        assert hits == ["/tiny.qcow2"]
        project.pulumi("destroy", "--yes", "--skip-preview")
        assert libvirt_inventory(prefix) == {"domains": [], "networks": [], "pools": [], "volumes": []}
    finally:
        project.pulumi("destroy", "--yes", "--skip-preview", check=False)
        project.remove()
        httpd.shutdown()
        httpd.server_close()
