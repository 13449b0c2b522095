"""Read each host of a stack file through libvirt, for `virtstack hosts` and the capacity check of
`plan` and `up` (virtstack.hostcap): node info, the domains that are and are not this stack's, and
the stack file's pools.  Reads only; never changes anything.

Public API:
    read_hosts(spec, owner, open_uri) -> dict[host, HostReading]
        Raises VirtstackError naming the host and its URI when it cannot be read.
    read_host(conn, host, uri, owner, pools) -> HostReading
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import libvirt

from virtstack import contract
from virtstack.contract import Owner
from virtstack.errors import VirtstackError
from virtstack.hostcap import HostReading, PoolReading
from virtstack.provider.connection import (
    OPEN_TIMEOUT,
    HostUnreachable,
    display_uri,
    found_or_none,
    is_not_found,
)
from virtstack.provider.ownership import domain_owner, owns, pool_owner
from virtstack.spec import StackSpec

__all__ = ["read_host", "read_hosts"]

KIB = 1024


def _pool_reading(pool: Any, owner: Owner) -> PoolReading:
    if not pool.isActive():
        return PoolReading(0, 0, 0)
    pool.refresh(0)
    _, capacity, allocation, available = pool.info()
    owned = owns(pool_owner(pool), owner)
    prefix = contract.external_volume_name(owner.stack, "")
    ours = 0
    for name in pool.listVolumes():
        if owned or name.startswith(prefix):
            vol = found_or_none(pool.storageVolLookupByName, name)
            if vol is not None:
                try:
                    ours += vol.info()[2]
                except libvirt.libvirtError as err:
                    if not is_not_found(err):
                        raise
    return PoolReading(capacity, allocation, available, ours)


def read_host(conn: Any, host: str, uri: str, owner: Owner, pools: Iterable[str]) -> HostReading:
    info = conn.getInfo()  # [model, memory MiB, cpus, ...]
    ours: dict[str, tuple[int, int]] = {}
    others: dict[str, tuple[int, int]] = {}
    for dom in conn.listAllDomains(0):
        try:
            # Current memory (what the domain is given; a balloon may lower it), not its maximum.
            _, _, memory_kib, vcpus, _ = dom.info()
            entry = (int(vcpus), int(memory_kib) * KIB)
            (ours if owns(domain_owner(dom), owner) else others)[dom.name()] = entry
        except libvirt.libvirtError as err:
            if not is_not_found(err):
                raise
            # Undefined between the listing and this read (another stack's destroy): it uses nothing.
    readings = {}
    for name in pools:
        pool = found_or_none(conn.storagePoolLookupByName, name)
        if pool is not None:
            readings[name] = _pool_reading(pool, owner)
    return HostReading(host, uri, int(info[2]), int(info[1]) * KIB * KIB, ours, others, readings)


def _open_within(open_uri: Callable[[str], Any], uri: str, timeout: float) -> Any:
    """``open_uri(uri)`` on a helper thread, waited for at most ``timeout`` seconds: libvirt has no
    connect timeout, and a hung host must fail the command with its name, not hang it."""
    opened: list[Any] = []
    failed: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            opened.append(open_uri(uri))
        except BaseException as err:  # handed to the waiting thread
            failed.append(err)
        done.set()

    threading.Thread(target=run, name=f"libvirt-open {display_uri(uri)}", daemon=True).start()
    if not done.wait(timeout):
        raise HostUnreachable(
            f"libvirt host {display_uri(uri)} did not answer within {timeout:.0f}s "
            "(VIRTSTACK_CONNECT_TIMEOUT); is the host or its daemon hung?"
        )
    if failed:
        raise failed[0]
    return opened[0]


def read_hosts(
    spec: StackSpec, owner: Owner, open_uri: Callable[[str], Any], timeout: float = OPEN_TIMEOUT
) -> dict[str, HostReading]:
    """Every host of ``spec``, read at once (one thread per host, at most 16): a fleet of many hosts
    costs about one host's read."""

    def one(name: str) -> HostReading:
        host = spec.hosts[name]
        try:
            conn = _open_within(open_uri, host.uri, timeout)
            try:
                return read_host(conn, name, host.uri, owner, host.pools)
            finally:
                conn.close()
        except libvirt.libvirtError as err:
            message = (err.get_error_message() or str(err)).strip().splitlines()[0]
            raise VirtstackError(f"cannot read host {name} ({display_uri(host.uri)}): {message}") from None

    names = sorted(spec.hosts)
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))
