"""The `pulumi-libvirt` backend: the props `components.libvirt_args` builds, as pulumi-libvirt 0.5.4
resources (Pool, Network, Volume, CloudInitDisk, Domain) through one `pulumi_libvirt.Provider` per host.

A sibling of libvirt_args and owned by it: every spec decision (names, sizes, owners, DHCP ranges, TCG
settings, console log) is made there, once, as typed props (virtstack.props); this module only spells
those props the way terraform-provider-libvirt 0.7.6 (what the plugin bridges) takes them. What 0.7.6
has no field for goes through its `xml.xslt` (run by `xsltproc`): the owner records of domains and
networks, the DHCP range, the serial console log file and TCG's translation-cache size. A pool's owner
record is its owner volume, as the native backend writes it.

Differences from the native backend, by the Terraform core, not by choice: a domain is replaced
(deleted and defined again: new UUID, the VM restarts, disks kept) on any vCPU/memory/disk/NIC change;
a disk cannot grow in place (a larger size replaces the volume); deleted disks are deleted, not trashed.

The `pulumi_libvirt` SDK (~0.2 s to import, with parver) is imported on first use: a stack of native
hosts only never pays it, in every engine run of every `plan` and `up`.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

import pulumi

from virtstack import contract
from virtstack.contract import MIB, Owner
from virtstack.errors import VirtstackError
from virtstack.props import DomainProps, NetworkProps, PoolProps, VolumeProps
from virtstack.provider.xml import METADATA_NS

if TYPE_CHECKING:
    import pulumi_libvirt as pl

BACKEND = "pulumi-libvirt"
NATIVE = "native"
# terraform-provider-libvirt's network modes for virtstack's
_NETWORK_MODES = {"nat": "nat", "isolated": "none", "bridge": "bridge"}
_DOMAIN_NEW = ["disks", "networkInterfaces"]

_XSLT_HEAD = """<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy><xsl:apply-templates select="node()|@*"/></xsl:copy>
  </xsl:template>
"""
_XSLT_TAIL = "</xsl:stylesheet>\n"


def _named(opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """libvirt names are unique and the spec fixes them: a replacement deletes the old object first."""
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True))


def provider(host: str, uri: str, parent: pulumi.Resource) -> pl.Provider:
    """The host's one provider: every pulumi-libvirt resource below the host goes through it."""
    import pulumi_libvirt as pl  # on first use (see the module's docstring)

    return pl.Provider(f"{host}-libvirt", uri=uri, opts=pulumi.ResourceOptions(parent=parent))


def _owner_metadata(owner: str) -> str:
    record = Owner.parse(owner)
    return (
        f'<metadata><virtstack:owner xmlns:virtstack="{METADATA_NS}" '
        f"project={quoteattr(record.project)} stack={quoteattr(record.stack)}/></metadata>"
    )


def _append_to(match: str, content: str) -> str:
    """A template that copies the element `match` and appends `content` inside it."""
    return (
        f'  <xsl:template match="{match}">\n'
        f'    <xsl:copy><xsl:apply-templates select="node()|@*"/>{content}</xsl:copy>\n'
        "  </xsl:template>\n"
    )


def domain_xslt(props: DomainProps) -> str:
    """Owner record, serial console with its log file, TCG translation cache: what 0.7.6 cannot say."""
    parts = [_append_to("/domain", _owner_metadata(props.target.owner))]
    if props.domain_type == "qemu" and props.tb_cache_mib:
        parts.append(
            _append_to("/domain/features", f'<tcg><tb-cache unit="MiB">{props.tb_cache_mib}</tb-cache></tcg>')
        )
    log = f"<log file={quoteattr(props.console_log)} append='off'/>" if props.console_log else ""
    parts.append(_append_to("/domain/devices", f'<serial type="pty">{log}<target port="0"/></serial>'))
    return _XSLT_HEAD + "".join(parts) + _XSLT_TAIL


def network_xslt(props: NetworkProps) -> str:
    """Owner record, and the DHCP range libvirt_args chose (0.7.6 always hands out the whole subnet,
    which would collide with static addresses)."""
    parts = [_append_to("/network", _owner_metadata(props.target.owner))]
    if props.dhcp and props.dhcp_start and props.dhcp_end:
        parts.append(
            '  <xsl:template match="/network/ip/dhcp/range">\n'
            f"    <range start={quoteattr(props.dhcp_start)} end={quoteattr(props.dhcp_end)}/>\n"
            "  </xsl:template>\n"
        )
    return _XSLT_HEAD + "".join(parts) + _XSLT_TAIL


def unsupported(what: str, host: str) -> VirtstackError:
    return VirtstackError(
        f"host {host}: {what} is not supported with backend: pulumi-libvirt (use backend: native)"
    )


def pool(name: str, props: PoolProps, owner: Owner, opts: pulumi.ResourceOptions) -> pl.Pool:
    """A `dir` pool and, right after it, its owner record (an empty volume in it)."""
    import pulumi_libvirt as pl  # on first use (see the module's docstring)

    if props.external or props.path is None:
        raise unsupported(f"the external pool {props.name}", props.target.where)
    created = pl.Pool(name, name=props.name, type="dir", path=props.path, opts=_named(opts))
    pl.Volume(
        f"{name}-owner",
        name=contract.pool_owner_volume(owner),
        pool=props.name,
        format="raw",
        opts=_named(pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[created]))),
    )
    return created


def network(name: str, props: NetworkProps, opts: pulumi.ResourceOptions) -> pl.Network:
    import pulumi_libvirt as pl  # on first use (see the module's docstring)

    if props.external:
        raise unsupported(f"the external network {props.name}", props.target.where)
    return pl.Network(
        name,
        name=props.name,
        mode=_NETWORK_MODES[props.mode],
        bridge=props.bridge,
        addresses=[props.cidr] if props.cidr else None,
        dhcp=pl.NetworkDhcpArgs(enabled=bool(props.dhcp)) if props.cidr else None,
        autostart=True,
        xml=pl.NetworkXmlArgs(xslt=network_xslt(props)),
        opts=_named(opts),
    )


def volume(
    name: str,
    props: VolumeProps,
    opts: pulumi.ResourceOptions,
    base: pl.Volume | None = None,
) -> pl.Volume:
    """A base image (copied from its file), a root disk (copy-on-write over `base`) or a data disk."""
    import pulumi_libvirt as pl  # on first use (see the module's docstring)

    if props.external:
        raise unsupported(f"the external image {props.name}", props.target.where)
    if props.role == "base":
        named = _named(opts)
        return pl.Volume(
            name, name=props.name, pool=props.pool, source=props.source, format=props.format, opts=named
        )
    return pl.Volume(
        name,
        name=props.name,
        pool=props.pool,
        format=props.format,
        size=props.size,
        base_volume_id=base.id if base is not None else None,
        opts=_named(opts),
    )


def seed(name: str, props: VolumeProps, opts: pulumi.ResourceOptions) -> pl.CloudInitDisk:
    import pulumi_libvirt as pl  # on first use (see the module's docstring)

    return pl.CloudInitDisk(
        name,
        name=props.name,
        pool=props.pool,
        user_data=props.user_data,
        meta_data=props.meta_data,
        network_config=props.network_config or None,
        opts=_named(opts),
    )


def domain(
    name: str,
    props: DomainProps,
    disks: list[pl.Volume],
    cloudinit: pl.CloudInitDisk,
    networks: dict[str, pl.Network],
    opts: pulumi.ResourceOptions,
) -> pl.Domain:
    """`disks`: root first, then data disks, as `props.disks` lists them (the seed is `cloudinit`)."""
    import pulumi_libvirt as pl  # on first use (see the module's docstring)

    return pl.Domain(
        name,
        name=props.name,
        type=props.domain_type,
        machine="pc",
        vcpu=props.vcpus,
        memory=props.memory // MIB,
        running=props.running,
        autostart=props.autostart,
        cpu=pl.DomainCpuArgs(mode=props.cpu_mode) if props.domain_type == "kvm" and props.cpu_mode else None,
        disks=[pl.DomainDiskArgs(volume_id=disk.id) for disk in disks],
        cloudinit=cloudinit.id,
        network_interfaces=[
            pl.DomainNetworkInterfaceArgs(network_id=networks[nic.network].id, mac=nic.mac)
            for nic in props.nics
        ],
        consoles=[pl.DomainConsoleArgs(type="pty", target_port="0", target_type="serial")],
        qemu_agent=False,  # virtstack asks the agent itself (`up --wait ready`); 0.7.6 would wait for it
        xml=pl.DomainXmlArgs(xslt=domain_xslt(props)),
        # 0.7.6 forces a new domain for these, but a preview where a disk's id is not known yet says
        # "update": replace_on_changes makes the plan say what the apply does (and `up --plan` agree).
        opts=_named(
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(replace_on_changes=_DOMAIN_NEW))
        ),
    )


def __getattr__(name: str) -> ModuleType:
    """`pulumi_libvirt.pl` for callers' isinstance checks, imported on first use."""
    if name == "pl":
        import pulumi_libvirt

        return pulumi_libvirt
    raise AttributeError(name)
