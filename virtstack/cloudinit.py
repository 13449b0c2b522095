"""Cloud-init NoCloud documents for one VM instance.  Pure text rendering.

Public API:
    render_user_data(vm: VmInstance) -> str
    render_meta_data(vm: VmInstance, network_config: str | None = None) -> str
    render_network_config(vm: VmInstance, networks: Mapping[str, NetworkSpec]) -> str | None
    instance_id(vm: VmInstance, network_config: str | None = None, key: bytes | None = None) -> str
    instance_id_key(environ=None) -> bytes

user-data:
    * Raw ``user_data`` passes through byte for byte.
    * Otherwise ``#cloud-config`` with, in this order: hostname, fqdn (the VM
      instance name unless cloud_init.hostname is set; fqdn gets
      ``.<domain>`` when cloud_init.domain is set), users, packages, runcmd,
      write_files.  With neither cloud_init nor user_data only the hostname
      part is rendered.
    * users: the listed users replace the distro's default user (cloud-init
      semantics; ``default`` is not added).  ``shell`` is rendered (default
      /bin/bash), ``sudo`` as given (true was turned into
      ``ALL=(ALL) NOPASSWD:ALL`` by the spec).  A password is rendered as
      ``plain_text_passwd`` with ``lock_passwd: false`` -- the simplest form,
      and deterministic (a salted hash would change the document on every run
      and force a redeploy).  The price: the password sits in clear text in the
      seed ISO, readable by whoever can read the host's pool; prefer SSH keys.
      SSH password login stays as the image configures it (usually off).
    * write_files entries: path, content, then permissions/owner when set and
      ``defer: true`` when set (needed when owner is a user cloud-init creates).
    * ``password_hash`` is rendered as ``hashed_passwd``; ``password_env`` and
      ``password_file`` are resolved into ``password`` by virtstack.edge first.

meta-data:
    ``instance-id: <vm name>-<12 hex of HMAC(key, name, user-data, network-config)>``
    and ``local-hostname`` (the key: see instance_id_key; a plain hash let a
    dictionary attack recover a password from the id in the state).
    Including the content means a change to the
    user data gives a new instance-id, so cloud-init runs its per-instance
    modules again and the change takes effect on an existing disk instead of
    being silently ignored.  The cost: cloud-init treats it as a new instance
    (e.g. it regenerates SSH host keys).

network-config (v2):
    one ``nicN`` entry per NIC, matched by MAC.  Static NICs get
    ``<ip>/<prefix>``; a default route via the network's gateway (nat: .1,
    bridge: ``gateway``) only on the first NIC that can provide one (a DHCP
    NIC on a nat or bridge network counts), so a guest never gets two default
    routes; nameserver = gateway, or the host's .1 on isolated networks
    (libvirt's dnsmasq answers DNS there too).  NICs without ip use DHCP when
    the network has it (nat/isolated with dhcp, or a bridge LAN), else get no
    address.  Returns None when cloud-init's fallback (DHCP on the first NIC)
    does the same job: at most one NIC and it uses DHCP.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from virtstack.errors import VirtstackError
from virtstack.fleet import VmInstance
from virtstack.spec import CloudInitSpec, NetworkSpec

__all__ = ["instance_id", "instance_id_key", "render_meta_data", "render_network_config", "render_user_data"]


class _Dumper(yaml.SafeDumper):
    """Block-style YAML; multi-line strings as literal blocks (readable files)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def _dump(document: Mapping[str, Any]) -> str:
    # width: never fold long lines (SSH keys, commands) -- easier to read and grep.
    return yaml.dump(
        dict(document),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=2**31 - 1,
    )


def _cloud_config(vm: VmInstance, config: CloudInitSpec | None) -> dict[str, Any]:
    hostname = vm.hostname
    document: dict[str, Any] = {"hostname": hostname}
    domain = config.domain if config is not None else None
    document["fqdn"] = f"{hostname}.{domain}" if domain else hostname
    if config is None:
        return document
    if config.users:
        users = []
        for user in config.users:
            entry: dict[str, Any] = {"name": user.name, "shell": user.shell}
            if user.groups:
                entry["groups"] = list(user.groups)
            if user.sudo is not None:
                entry["sudo"] = user.sudo
            if user.password is not None:
                entry["lock_passwd"] = False
                entry["plain_text_passwd"] = user.password.get_secret_value()
            elif user.password_hash is not None:
                entry["lock_passwd"] = False
                entry["hashed_passwd"] = user.password_hash.get_secret_value()
            elif user.password_env is not None or user.password_file is not None:
                # virtstack.edge.resolve_passwords turns these into `password` before rendering.
                raise VirtstackError(f"VM {vm.name}: the password of user {user.name} was not resolved")
            if user.ssh_authorized_keys:
                entry["ssh_authorized_keys"] = list(user.ssh_authorized_keys)
            users.append(entry)
        document["users"] = users
    if config.packages:
        document["packages"] = list(config.packages)
    if config.runcmd:
        document["runcmd"] = [cmd if isinstance(cmd, str) else list(cmd) for cmd in config.runcmd]
    if config.write_files:
        files = []
        for item in config.write_files:
            file_entry: dict[str, Any] = {"path": item.path, "content": item.content}
            if item.permissions is not None:
                file_entry["permissions"] = item.permissions
            if item.owner is not None:
                file_entry["owner"] = item.owner
            if item.defer:
                file_entry["defer"] = True
            files.append(file_entry)
        document["write_files"] = files
    return document


def render_user_data(vm: VmInstance) -> str:
    if vm.user_data is not None:
        return vm.user_data.get_secret_value()
    return "#cloud-config\n" + _dump(_cloud_config(vm, vm.cloud_init))


def instance_id_key(environ: Mapping[str, str] | None = None) -> bytes:
    """The key of instance_id's HMAC: VIRTSTACK_INSTANCE_ID_KEY, else derived from the stack's
    passphrase (PULUMI_CONFIG_PASSPHRASE or the file PULUMI_CONFIG_PASSPHRASE_FILE names).

    Whoever has the passphrase can decrypt the user data from the state anyway, so keying with it
    reveals nothing new, and every machine that can deploy the stack computes the same ids."""
    environ = os.environ if environ is None else environ
    material = environ.get("VIRTSTACK_INSTANCE_ID_KEY") or environ.get("PULUMI_CONFIG_PASSPHRASE")
    if not material and environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        try:
            material = (
                Path(environ["PULUMI_CONFIG_PASSPHRASE_FILE"]).read_text(encoding="utf-8").rstrip("\r\n")
            )
        except OSError:
            material = None
    if not material:
        raise VirtstackError(
            "no key for cloud-init instance ids: set PULUMI_CONFIG_PASSPHRASE (or "
            "VIRTSTACK_INSTANCE_ID_KEY when the stack uses another secrets provider)"
        )
    return hmac.new(b"virtstack instance-id v1", material.encode(), hashlib.sha256).digest()


def instance_id(vm: VmInstance, network_config: str | None = None, key: bytes | None = None) -> str:
    """``<vm name>-<12 hex>``: a keyed HMAC of the user data and network config (key: instance_id_key).

    It changes with the content (so cloud-init applies changed user data) but, unlike a plain hash,
    cannot be used offline to test guesses of a password in the user data: it sits in clear in the
    state and in the guest's meta-data."""
    mac = hmac.new(instance_id_key() if key is None else key, digestmod=hashlib.sha256)
    mac.update(vm.name.encode())
    mac.update(b"\0")
    mac.update(render_user_data(vm).encode())
    mac.update(b"\0")
    mac.update((network_config or "").encode())
    return f"{vm.name}-{mac.hexdigest()[:12]}"


def render_meta_data(vm: VmInstance, network_config: str | None = None) -> str:
    """NoCloud meta-data; pass the rendered network-config so it counts in the id."""
    return _dump({"instance-id": instance_id(vm, network_config), "local-hostname": vm.hostname})


def render_network_config(vm: VmInstance, networks: Mapping[str, NetworkSpec]) -> str | None:
    """Network config v2 for ``vm`` on a host whose networks are ``networks``."""
    ethernets: dict[str, dict[str, Any]] = {}
    has_default_route = False
    all_dhcp = True
    for i, nic in enumerate(vm.nics):
        network = networks.get(nic.network)
        if network is None:
            raise VirtstackError(f"VM {vm.name}: network {nic.network} is not defined on its host")
        entry: dict[str, Any] = {"match": {"macaddress": nic.mac}}
        if nic.ip is not None:
            all_dhcp = False
            if network.cidr is None:
                raise VirtstackError(f"VM {vm.name}: network {nic.network} has no cidr for address {nic.ip}")
            entry["addresses"] = [f"{nic.ip}/{network.cidr.prefixlen}"]
            gateway = network.gateway_address
            if gateway is not None and not has_default_route:
                entry["routes"] = [{"to": "0.0.0.0/0", "via": str(gateway)}]
                has_default_route = True
            nameserver = gateway or network.host_address
            if nameserver is not None:
                entry["nameservers"] = {"addresses": [str(nameserver)]}
        elif network.dhcp_enabled or network.mode == "bridge":
            entry["dhcp4"] = True
            # libvirt's dnsmasq hands out no router on isolated networks.
            if network.mode != "isolated":
                has_default_route = True
        else:
            all_dhcp = False
            entry["dhcp4"] = False
        ethernets[f"nic{i}"] = entry
    if all_dhcp and len(vm.nics) <= 1:
        return None
    return _dump({"version": 2, "ethernets": ethernets})
