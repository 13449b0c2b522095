"""The floor: the libvirt operations a virtstack `up` performs, written by hand with libvirt-python and a
thread pool — no engine, no program, no state.

Same objects as virtstack creates (it reuses virtstack's *pure* builders for the documents only:
placement, cloud-init text and libvirt XML, so both sides create byte-identical pools, networks,
volumes and domains): per host a dir pool, an isolated network and one base volume uploaded from the
image; per VM a qcow2 root overlay on the base, a NoCloud seed ISO (genisoimage, uploaded) and a
domain, defined and started. Per host, one connection per worker thread (libvirtd serves at most
`max_client_requests` = 5 calls at once per connection), `workers` threads.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import libvirt
import yaml

from bench.specs import PROJECT_ROOT
from components import libvirt_args as la
from virtstack.cloudinit import render_meta_data, render_network_config, render_user_data
from virtstack.contract import Owner
from virtstack.edge import resolve_connections, resolve_images
from virtstack.fleet import resolve_pool
from virtstack.placement import place_fleet
from virtstack.provider import xml
from virtstack.spec.loader import parse_spec


def qcow2_virtual_size(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:4] != b"QFI\xfb":
        return os.path.getsize(path)
    return struct.unpack(">Q", head[24:32])[0]


def _upload(conn: libvirt.virConnect, vol: libvirt.virStorageVol, path: str) -> None:
    size = os.path.getsize(path)
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    with open(path, "rb") as f:
        stream.sendAll(lambda _s, n, fh: fh.read(n), f)
    stream.finish()


def _seed_iso(files: dict[str, str], workdir: str) -> str:
    for name, content in files.items():
        Path(workdir, name).write_text(content, encoding="utf-8")
    iso = os.path.join(workdir, "seed.iso")
    subprocess.run(
        ["genisoimage", "-quiet", "-output", iso, "-volid", "cidata", "-joliet", "-rock", *files],
        check=True,
        cwd=workdir,
        capture_output=True,
    )
    return iso


class Floor:
    def __init__(self, spec: dict[str, Any], stack: str, workers: int = 8) -> None:
        self.stack = stack
        # The floor records the same owner as virtstack would, so its objects look like a stack's.
        self.owner = Owner("virtstack", stack)
        self.workers = workers
        self.model = parse_spec(yaml.safe_dump(spec), "floor.yaml")
        self.fleet_plan = place_fleet(self.model, "floor.yaml")
        self.connections = resolve_connections(self.model, PROJECT_ROOT)
        self.images = resolve_images(self.model, PROJECT_ROOT, "floor.yaml", {"debian-12"})
        self._local = threading.local()
        self.phase: dict[str, float] = {}

    def _place(self, pool: str) -> la.PoolPlace:
        return la.PoolPlace(pool, False, self.owner)

    def _conn(self, uri: str) -> libvirt.virConnect:
        conns = self._local.__dict__.setdefault("conns", {})
        if uri not in conns:
            conns[uri] = libvirt.open(uri)
        return conns[uri]

    def _host_setup(self, host: str) -> str:
        """Pool, network and base volume of one host; returns the base volume's path."""
        spec, conn_info = self.model.hosts[host], self.connections[host]
        conn = self._conn(conn_info.uri)
        for name, pool_spec in spec.pools.items():
            pool = conn.storagePoolDefineXML(
                xml.pool_xml(la.pool_props(conn_info, self.owner, name, pool_spec)), 0
            )
            pool.build(0)
            pool.create(0)
            pool.setAutostart(1)
        for name, net_spec in spec.networks.items():
            net = conn.networkDefineXML(
                xml.network_xml(la.network_props(conn_info, self.owner, name, net_spec))
            )
            net.create()
            net.setAutostart(1)
        image = self.images["debian-12"]
        pool_name = next(iter(spec.pools))
        props = la.base_volume_props(conn_info, self._place(pool_name), image)
        pool = conn.storagePoolLookupByName(pool_name)
        vol = pool.createXML(xml.volume_xml(props, qcow2_virtual_size(image.source)), 0)
        _upload(conn, vol, image.source)
        return vol.path()

    def _vm(self, host: str, vm: Any, base_path: str) -> None:
        spec, conn_info = self.model.hosts[host], self.connections[host]
        conn = self._conn(conn_info.uri)
        pool_name = resolve_pool(spec, vm.pool) or ""
        pool = conn.storagePoolLookupByName(pool_name)
        image = self.images[vm.image]
        place = self._place(pool_name)
        root = la.root_volume_props(conn_info, place, vm, image, base_path)
        pool.createXML(xml.volume_xml(root, int(vm.disk_bytes)), 0)
        network_config = render_network_config(vm, {n: spec.networks[n] for n in vm.networks})
        files = {"user-data": render_user_data(vm), "meta-data": render_meta_data(vm, network_config)}
        if network_config:
            files["network-config"] = network_config
        seed = la.seed_volume_props(conn_info, place, vm, "", "", None)
        with tempfile.TemporaryDirectory(prefix="vsb-floor-") as workdir:
            iso = _seed_iso(files, workdir)
            vol = pool.createXML(xml.volume_xml(seed, os.path.getsize(iso)), 0)
            _upload(conn, vol, iso)
        disks = [(root.name, "")]
        props = la.domain_props(conn_info, self.owner, place, vm, disks, seed.name)
        dom = conn.defineXML(xml.domain_xml(props))
        dom.setAutostart(0)
        if vm.running:
            dom.create()

    def up(self) -> dict[str, float]:
        """Everything created (and started); returns phase seconds."""
        placed = self.fleet_plan.placement.assignments
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            bases = dict(zip(self.model.hosts, pool.map(self._host_setup, self.model.hosts), strict=True))
            t1 = time.perf_counter()
            futures = [
                pool.submit(self._vm, placed[vm.name], vm, bases[placed[vm.name]])
                for vm in self.fleet_plan.fleet
            ]
            for f in futures:
                f.result()
        t2 = time.perf_counter()
        return {"hosts_seconds": t1 - t0, "vms_seconds": t2 - t1, "seconds": t2 - t0}

    def names(self) -> list[str]:
        return [vm.name for vm in self.fleet_plan.fleet]


def genisoimage_available() -> bool:
    return shutil.which("genisoimage") is not None
