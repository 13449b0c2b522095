"""The floor of a no-change run: a libvirt-python script that reads the objects a stack holds — per
host its pools, networks, volumes and domains whose names start with the stack's prefix: each one's
XML, state and info — from a thread pool, one connection per host and worker, nothing else (no
engine, no program, no state). `virtstack plan` and a no-change `virtstack up` read the same objects
(their refresh), then diff and write state: the ratio is what the engine layer costs over the reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import libvirt

from bench.harness import open_conn

WORKERS = 16


def read_all(uris: list[str], prefix: str, workers: int = WORKERS) -> dict[str, Any]:
    local = threading.local()

    def conn(uri: str) -> libvirt.virConnect:
        conns = getattr(local, "conns", None)
        if conns is None:
            conns = local.conns = {}
        if uri not in conns:
            conns[uri] = open_conn(uri)
        return conns[uri]

    def tasks_of(uri: str) -> list[Callable[[], object]]:
        c = conn(uri)
        out: list[Callable[[], object]] = []
        for dom in c.listAllDomains(0):
            name = dom.name()
            if name.startswith(prefix):
                out.append(lambda u=uri, n=name: _read_domain(conn(u), n))
        for net in c.listAllNetworks(0):
            name = net.name()
            if name.startswith(prefix):
                out.append(lambda u=uri, n=name: _read_network(conn(u), n))
        for pool in c.listAllStoragePools(0):
            pname = pool.name()
            if not pname.startswith(prefix):
                continue
            out.append(lambda u=uri, n=pname: _read_pool(conn(u), n))
            for vol in pool.listAllVolumes(0):
                vname = vol.name()
                out.append(lambda u=uri, p=pname, v=vname: _read_volume(conn(u), p, v))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        tasks = [t for ts in ex.map(tasks_of, uris) for t in ts]
        for f in [ex.submit(t) for t in tasks]:
            f.result()
    return {"seconds": time.perf_counter() - t0, "objects": len(tasks)}


def _read_domain(c: libvirt.virConnect, name: str) -> object:
    dom = c.lookupByName(name)
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), dom.state(), dom.autostart(), dom.UUIDString()


def _read_network(c: libvirt.virConnect, name: str) -> object:
    net = c.networkLookupByName(name)
    return net.XMLDesc(0), net.isActive(), net.autostart()


def _read_pool(c: libvirt.virConnect, name: str) -> object:
    pool = c.storagePoolLookupByName(name)
    return pool.XMLDesc(0), pool.info(), pool.isActive()


def _read_volume(c: libvirt.virConnect, pool: str, name: str) -> object:
    vol = c.storagePoolLookupByName(pool).storageVolLookupByName(name)
    return vol.XMLDesc(0), vol.info()
