"""Networks: created and owned through their metadata, or used as `external` (never changed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import libvirt
import pulumi
from pulumi.dynamic import (
    CreateResult,
    ReadResult,
    UpdateResult,
)

from virtstack import contract
from virtstack.props import NetworkProps
from virtstack.provider import ownership, xml
from virtstack.provider.base import Provider
from virtstack.provider.connection import found_or_none, with_connection
from virtstack.provider.ownership import OwnershipError, owner_of, owns, refusal


def _lookup_network(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork | None:
    return found_or_none(conn.networkLookupByName, name)


def _external_network_problem(net: libvirt.virNetwork | None, props: NetworkProps) -> str | None:
    where = f"external network {props.name} on host {props.target.where}"
    if net is None:
        return f"{where} does not exist (an external network is used, never created)"
    if not net.isActive():
        return f"{where} is not active (virtstack does not start a network it does not own)"
    live = xml.parse_network(net.XMLDesc(0))
    if props.cidr and live.get("cidr") != props.cidr:
        return f"{where} has address range {live.get('cidr') or 'none'}, not {props.cidr}"
    if props.mode and live.get("mode") != props.mode:
        return f"{where} is mode {live.get('mode')}, not {props.mode}"
    return None


def _other_users_of_network(
    conn: libvirt.virConnect, network: str, owner: contract.Owner | None
) -> list[str]:
    """Domains not of `owner` with a NIC on `network` (stacks that use it as `external`, or people)."""
    users = []
    for dom in conn.listAllDomains(0):
        doc = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        uses = any(nic["network"] == network for nic in xml.parse_domain(doc)["nics"])
        if uses and not owns(ownership.owner_from_xml(doc), owner):
            users.append(dom.name())
    return sorted(users)


class NetworkProvider(Provider[NetworkProps]):
    kind = contract.NETWORK

    def props(self, inputs: Mapping[str, Any]) -> NetworkProps:
        return NetworkProps.from_inputs(inputs)

    def problem(self, conn: libvirt.virConnect, props: NetworkProps) -> str | None:
        net = _lookup_network(conn, props.name)
        if props.external:
            return _external_network_problem(net, props)
        if net is None:
            return None
        record = ownership.network_owner(net)
        if not owns(record, owner_of(props.target)):
            return refusal("network", props.name, props.target, record)
        return None

    def create(self, inputs: dict[str, Any]) -> CreateResult:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> str:
            problem = self.problem(conn, props)
            if problem:
                raise OwnershipError(problem)
            net = _lookup_network(conn, props.name)
            if props.external:
                return str(net.UUIDString()) if net is not None else ""
            if net is None:
                net = conn.networkDefineXML(xml.network_xml(props))
            if not net.isActive():
                net.create()
            net.setAutostart(1)
            return str(net.UUIDString())

        uuid = with_connection(props.target.uri, op)
        return CreateResult(uuid, {**inputs, "uuid": uuid})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        props = self.props(news)

        # Only the owner record reaches update (every other key replaces the network).
        def op(conn: libvirt.virConnect) -> None:
            net = _lookup_network(conn, props.name)
            owner = owner_of(props.target)
            if net is None or owner is None or props.external:
                return
            record = ownership.network_owner(net)
            if record is not None and not owns(record, owner):
                raise OwnershipError(refusal("network", props.name, props.target, record))
            ownership.set_network_owner(conn, net, owner)

        with_connection(props.target.uri, op)
        return UpdateResult({**olds, **news, "uuid": olds.get("uuid")})

    def read(self, id_: str, inputs: dict[str, Any]) -> ReadResult:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> ReadResult:
            net = _lookup_network(conn, props.name)
            if net is None:
                return ReadResult("", {})
            return ReadResult(id_, {**inputs, "state": "active" if net.isActive() else "inactive"})

        return with_connection(props.target.uri, op)

    def delete(self, _id: str, inputs: dict[str, Any]) -> None:
        props = self.props(inputs)

        def op(conn: libvirt.virConnect) -> None:
            net = _lookup_network(conn, props.name)
            if net is None or props.external:
                return
            owner = owner_of(props.target)
            record = ownership.network_owner(net)
            if owner is not None and not owns(record, owner):
                pulumi.log.warn(
                    refusal("network", props.name, props.target, record) + "; it is left as it is"
                )
                return
            users = _other_users_of_network(conn, props.name, owner)
            if users:
                pulumi.log.warn(
                    f"network {props.name} on host {props.target.where} is kept: "
                    f"domains of others use it ({', '.join(users)})"
                )
                return
            if net.isActive():
                net.destroy()
            net.undefine()

        with_connection(props.target.uri, op)
