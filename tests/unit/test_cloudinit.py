"""Cloud-init rendering (virtstack.cloudinit): rendered text parsed back and checked."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from virtstack.cloudinit import instance_id, render_meta_data, render_network_config, render_user_data
from virtstack.errors import VirtstackError
from virtstack.fleet import VmInstance, expand_group
from virtstack.spec import NetworkSpec, VmSpec

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdXwOaFbwvfEXd5Oxqh0G8dfdXlDyFhJyxpHAdnFUxY ops@example"

NETWORKS = {
    name: NetworkSpec.model_validate(data)
    for name, data in {
        "lab": {"mode": "nat", "cidr": "10.77.0.0/24"},
        "iso": {"mode": "isolated", "cidr": "10.78.0.0/24"},
        "quiet": {"mode": "isolated", "cidr": "10.79.0.0/24", "dhcp": False},
        "lan": {"mode": "bridge", "bridge": "br0", "cidr": "192.168.1.0/24", "gateway": "192.168.1.254"},
        "lan-nocidr": {"mode": "bridge", "bridge": "br1"},
    }.items()
}


def make(group: str = "web", count: int = 1, **overrides: Any) -> list[VmInstance]:
    data: dict[str, Any] = {"image": "img", "vcpus": 1, "memory": "512MiB", "disk": "4GiB", "count": count}
    data.update(overrides)
    return expand_group(group, VmSpec.model_validate(data))


def cloud_config(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


# ------------------------------------------------------------------ user-data


def test_minimal_user_data_sets_hostname() -> None:
    [vm] = make()
    assert cloud_config(render_user_data(vm)) == {"hostname": "web", "fqdn": "web"}


def test_hostname_per_instance() -> None:
    vms = make(count=2, cloud_init={"packages": ["nginx"]})
    assert [cloud_config(render_user_data(vm))["hostname"] for vm in vms] == ["web", "web-2"]


def test_full_user_data() -> None:
    [vm] = make(
        cloud_init={
            "hostname": "www",
            "domain": "lab.example.com",
            "users": [
                {"name": "ops", "ssh_authorized_keys": [KEY], "sudo": True, "groups": ["adm", "sudo"]},
                {"name": "app", "password": "s3cret!", "shell": "/bin/sh"},
            ],
            "packages": ["nginx", "git"],
            "runcmd": ["systemctl enable --now nginx", ["touch", "/tmp/a b"]],
            "write_files": [
                {"path": "/etc/motd", "content": "hello\nworld\n", "permissions": "0644"},
                {"path": "/home/app/x", "content": "x", "owner": "app:app", "defer": True},
            ],
        }
    )
    text = render_user_data(vm)
    assert cloud_config(text) == {
        "hostname": "www",
        "fqdn": "www.lab.example.com",
        "users": [
            {
                "name": "ops",
                "shell": "/bin/bash",
                "groups": ["adm", "sudo"],
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "ssh_authorized_keys": [KEY],
            },
            {"name": "app", "shell": "/bin/sh", "lock_passwd": False, "plain_text_passwd": "s3cret!"},
        ],
        "packages": ["nginx", "git"],
        "runcmd": ["systemctl enable --now nginx", ["touch", "/tmp/a b"]],
        "write_files": [
            {"path": "/etc/motd", "content": "hello\nworld\n", "permissions": "0644"},
            {"path": "/home/app/x", "content": "x", "owner": "app:app", "defer": True},
        ],
    }
    # Keys stay in the documented order, multi-line content is a literal block.
    assert [
        line.split(":")[0]
        for line in text.splitlines()[1:]
        if line and not line[0].isspace() and not line.startswith("-")
    ] == ["hostname", "fqdn", "users", "packages", "runcmd", "write_files"]
    assert "content: |\n" in text
    # SSH keys are never folded over several lines.
    assert f"- {KEY}\n" in text


def test_sudo_string_passes_through() -> None:
    [vm] = make(cloud_init={"users": [{"name": "ops", "sudo": "ALL=(ALL) ALL"}]})
    assert cloud_config(render_user_data(vm))["users"][0]["sudo"] == "ALL=(ALL) ALL"


def test_tricky_strings_round_trip() -> None:
    content = "key: value\n# not a comment\n  indented\ttab\ntrailing space \n"
    [vm] = make(
        cloud_init={
            "write_files": [{"path": "/etc/x", "content": content}],
            "runcmd": ["echo 'a: b' # c", "yes", "0644", "on"],
        }
    )
    document = cloud_config(render_user_data(vm))
    assert document["write_files"][0]["content"] == content
    assert document["runcmd"] == ["echo 'a: b' # c", "yes", "0644", "on"]


def test_raw_user_data_passes_through_unchanged() -> None:
    raw = "#cloud-config\n# exact bytes, odd spacing:   kept\npackages:   [git]\n"
    [vm] = make(user_data=raw)
    assert render_user_data(vm) == raw


def test_raw_shell_script_passes_through() -> None:
    raw = "#!/bin/sh\necho hi\n"
    [vm] = make(user_data=raw)
    assert render_user_data(vm) == raw


# ------------------------------------------------------------------ meta-data


def test_meta_data() -> None:
    [vm] = make()
    document = yaml.safe_load(render_meta_data(vm))
    assert document["local-hostname"] == "web"
    assert document["instance-id"].startswith("web-")
    assert len(document["instance-id"]) == len("web-") + 12
    assert document["instance-id"] == instance_id(vm)


def test_instance_id_is_stable_and_follows_content() -> None:
    [a] = make(cloud_init={"packages": ["nginx"]})
    [same] = make(cloud_init={"packages": ["nginx"]})
    [changed] = make(cloud_init={"packages": ["nginx", "git"]})
    assert instance_id(a) == instance_id(same)
    assert instance_id(a) != instance_id(changed)
    assert instance_id(a, "version: 2\n") != instance_id(a)


def test_meta_data_uses_custom_hostname() -> None:
    [vm] = make(cloud_init={"hostname": "www"})
    assert yaml.safe_load(render_meta_data(vm))["local-hostname"] == "www"


# -------------------------------------------------------------- network-config


def network(vm: VmInstance) -> dict[str, Any] | None:
    text = render_network_config(vm, NETWORKS)
    return None if text is None else yaml.safe_load(text)


def test_single_dhcp_nic_needs_no_network_config() -> None:
    [vm] = make(nics=[{"network": "lab"}])
    assert render_network_config(vm, NETWORKS) is None
    [bare] = make()
    assert render_network_config(bare, NETWORKS) is None


def test_static_nic_on_nat_network() -> None:
    vms = make(count=2, nics=[{"network": "lab", "ip": "10.77.0.10"}])
    document = network(vms[1])
    assert document == {
        "version": 2,
        "ethernets": {
            "nic0": {
                "match": {"macaddress": vms[1].nics[0].mac},
                "addresses": ["10.77.0.11/24"],
                "routes": [{"to": "0.0.0.0/0", "via": "10.77.0.1"}],
                "nameservers": {"addresses": ["10.77.0.1"]},
            }
        },
    }


def test_mac_is_a_string_even_when_it_looks_like_a_number() -> None:
    # 52:54:00:12:34:56 is a base-60 integer to a YAML 1.1 parser such as cloud-init's.
    [vm] = make(nics=[{"network": "lab", "ip": "10.77.0.10", "mac": "52:54:00:12:34:56"}])
    document = network(vm)
    assert document is not None
    assert document["ethernets"]["nic0"]["match"]["macaddress"] == "52:54:00:12:34:56"


def test_mixed_nics() -> None:
    [vm] = make(
        nics=[
            {"network": "iso", "ip": "10.78.0.5"},
            {"network": "lab"},
            {"network": "lan", "ip": "192.168.1.20"},
            {"network": "quiet"},
            {"network": "lan-nocidr"},
        ]
    )
    document = network(vm)
    assert document is not None
    macs = [nic.mac for nic in vm.nics]
    assert document["ethernets"] == {
        # isolated: no gateway, DNS from the host's dnsmasq
        "nic0": {
            "match": {"macaddress": macs[0]},
            "addresses": ["10.78.0.5/24"],
            "nameservers": {"addresses": ["10.78.0.1"]},
        },
        # the first DHCP NIC on a nat network provides the default route...
        "nic1": {"match": {"macaddress": macs[1]}, "dhcp4": True},
        # ...so the bridge's static NIC gets no second default route
        "nic2": {
            "match": {"macaddress": macs[2]},
            "addresses": ["192.168.1.20/24"],
            "nameservers": {"addresses": ["192.168.1.254"]},
        },
        "nic3": {"match": {"macaddress": macs[3]}, "dhcp4": False},
        "nic4": {"match": {"macaddress": macs[4]}, "dhcp4": True},
    }


def test_only_first_gateway_gets_default_route() -> None:
    [vm] = make(nics=[{"network": "lan", "ip": "192.168.1.20"}, {"network": "lab", "ip": "10.77.0.10"}])
    document = network(vm)
    assert document is not None
    assert document["ethernets"]["nic0"]["routes"] == [{"to": "0.0.0.0/0", "via": "192.168.1.254"}]
    assert "routes" not in document["ethernets"]["nic1"]


def test_two_dhcp_nics_are_both_configured() -> None:
    # cloud-init's fallback only brings up one NIC, so two DHCP NICs need a config.
    [vm] = make(nics=[{"network": "lab"}, {"network": "iso"}])
    document = network(vm)
    assert document is not None
    assert sorted(document["ethernets"]) == ["nic0", "nic1"]
    assert all(eth["dhcp4"] is True for eth in document["ethernets"].values())


def test_single_nic_without_any_address_source() -> None:
    [vm] = make(nics=[{"network": "quiet"}])
    document = network(vm)
    assert document is not None
    assert document["ethernets"]["nic0"]["dhcp4"] is False


@pytest.mark.parametrize(
    ("nics", "message"),
    [
        ([{"network": "nope"}], "VM web: network nope is not defined on its host"),
        (
            [{"network": "lan-nocidr", "ip": "192.168.1.5"}],
            "VM web: network lan-nocidr has no cidr for address 192.168.1.5",
        ),
    ],
)
def test_inconsistent_input_is_a_clean_error(nics: list[dict[str, Any]], message: str) -> None:
    [vm] = make(nics=nics)
    with pytest.raises(VirtstackError) as info:
        render_network_config(vm, NETWORKS)
    assert str(info.value) == message
