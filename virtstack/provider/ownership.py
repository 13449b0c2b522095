"""Who owns a libvirt object, read from and written to libvirt itself (so it survives a lost state).

- Domains and networks: a `<virtstack:owner project=… stack=…/>` element in their `<metadata>`.
- Pools: an empty volume in the pool named `virtstack-owner@<project>@<stack>` (libvirt keeps no
  metadata for pools); volumes in an owned pool belong to the pool's owner.
- Volumes in an `external` (shared) pool: the stack's name in the volume's name.

An object without a record was not created by virtstack (or by a version before records): it is never
adopted, changed or deleted. Domains of older virtstack versions recorded the stack only; they are
accepted for their stack.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

import libvirt

from virtstack import contract
from virtstack.contract import Owner
from virtstack.props import Target, VolumeProps
from virtstack.provider.connection import is_not_found
from virtstack.provider.xml import METADATA_NS

OWNER_TAG = f"{{{METADATA_NS}}}owner"


class OwnershipError(Exception):
    """An object exists on the host but is not this stack's: nothing was changed."""


def owner_of(target: Target) -> Owner | None:
    """The stack an object is asked for (`project/stack`); None for props without one (never ours)."""
    return Owner.parse(target.owner) if "/" in target.owner else None


def owns(record: Owner | None, me: Owner | None) -> bool:
    """Whether `record` (what libvirt holds) is `me`; a record without project (older virtstack
    domains) matches on the stack."""
    if record is None or me is None:
        return False
    return record.stack == me.stack and record.project in ("", me.project)


def refusal(kind: str, name: str, target: Target, record: Owner | None) -> str:
    host = target.where
    return (
        f"{kind} {name} on host {host} belongs to {contract.describe_owner(record)}, not to stack "
        f"{target.owner or None}: virtstack neither adopts, changes nor deletes it "
        f"(rename yours, or declare a shared pool or network `external: true`)"
    )


# ------------------------------------------------------------------------------ metadata (XML docs)


def owner_from_xml(doc: str) -> Owner | None:
    """The owner recorded in a domain's or network's XML, if any."""
    root = ET.fromstring(doc)
    meta = root.find("metadata")
    if meta is None:
        return None
    el = meta.find(OWNER_TAG)
    if el is None:
        return None
    stack = el.get("stack") or ""
    if not stack:
        return None
    return Owner(el.get("project") or "", stack)


def owner_element(owner: Owner) -> ET.Element:
    el = ET.Element(OWNER_TAG)
    el.set("project", owner.project)
    el.set("stack", owner.stack)
    return el


def with_owner(doc: str, owner: Owner) -> str:
    """`doc` (a network's XML) with the owner record put in its `<metadata>`."""
    ET.register_namespace("virtstack", METADATA_NS)
    root = ET.fromstring(doc)
    meta = root.find("metadata")
    if meta is None:
        meta = ET.Element("metadata")
        # libvirt keeps metadata after the name/uuid; the order does not matter to it.
        root.insert(2 if root.find("uuid") is not None else 1, meta)
    for old in meta.findall(OWNER_TAG):
        meta.remove(old)
    meta.append(owner_element(owner))
    return ET.tostring(root, encoding="unicode")


# -------------------------------------------------------------------------------------- domains


def domain_owner(dom: libvirt.virDomain) -> Owner | None:
    return owner_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def set_domain_owner(dom: libvirt.virDomain, owner: Owner) -> None:
    """Record the owner without redefining (no restart)."""
    xml = ET.tostring(owner_element(owner), encoding="unicode")
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, "virtstack", METADATA_NS, flags)


# ------------------------------------------------------------------------------------- networks


def _network_definition(net: libvirt.virNetwork) -> str:
    """The network's persistent XML; libvirt's test driver (simulated hosts) refuses the INACTIVE flag,
    and there the live XML is the definition."""
    try:
        return net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    except libvirt.libvirtError as err:
        if err.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise
        return net.XMLDesc(0)


def network_owner(net: libvirt.virNetwork) -> Owner | None:
    return owner_from_xml(_network_definition(net))


def set_network_owner(conn: libvirt.virConnect, net: libvirt.virNetwork, owner: Owner) -> None:
    """Record the owner in the network's persistent definition (a running network keeps running)."""
    conn.networkDefineXML(with_owner(_network_definition(net), owner))


# ---------------------------------------------------------------------------------------- pools


def pool_owner(pool: libvirt.virStoragePool) -> Owner | None:
    if not pool.isActive():
        return None  # an inactive pool lists no volumes: its record cannot be read
    for name in pool.listVolumes():
        owner = contract.parse_pool_owner_volume(name)
        if owner is not None:
            return owner
    return None


def set_pool_owner(pool: libvirt.virStoragePool, owner: Owner) -> None:
    name = contract.pool_owner_volume(owner)
    try:
        pool.storageVolLookupByName(name)
        return
    except libvirt.libvirtError as err:
        if not is_not_found(err):
            raise
    doc = (
        f"<volume><name>{name}</name><capacity unit='bytes'>0</capacity>"
        "<target><format type='raw'/></target></volume>"
    )
    pool.createXML(doc, 0)


def foreign_volumes(pool: libvirt.virStoragePool, owner: Owner) -> list[str]:
    """Volumes in `pool` other than its owner record: what keeps an owned pool from being deleted
    (another stack's volumes in a pool it uses as external, trashed disks, files put there by hand)."""
    record = contract.pool_owner_volume(owner)
    return sorted(name for name in pool.listVolumes() if name != record)


def volume_is_ours(pool: libvirt.virStoragePool, name: str, props: VolumeProps) -> bool:
    """Whether an existing volume `name` belongs to the stack of `props`."""
    me = owner_of(props.target)
    if me is None:
        return False
    if props.pool_external:
        return name.startswith(contract.external_volume_name(me.stack, ""))
    return owns(pool_owner(pool), me)
