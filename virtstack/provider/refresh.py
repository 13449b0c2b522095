"""Refresh a pool's volume list, waiting out libvirt's own jobs in it.

libvirt refuses `virStoragePoolRefresh` while the pool has asynchronous jobs — an upload's stream
finishes before libvirt's completion thread does, so a refresh right after an upload or a volume
build can fail with "pool … has asynchronous jobs running" for a moment.
"""

from __future__ import annotations

import time

import libvirt

BUSY_SECONDS = 30.0


def refresh_pool(pool: libvirt.virStoragePool, wait: float = BUSY_SECONDS) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            pool.refresh(0)
            return
        except libvirt.libvirtError as err:
            if "asynchronous jobs running" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
