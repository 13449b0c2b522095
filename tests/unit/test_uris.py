"""Host URIs from a (possibly hostile) stack file: program overrides, passwords, unknown parameters and
plain qemu+tcp are refused with the reason, at the uri's location (issue 11, "Escapes")."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from virtstack.errors import SpecError
from virtstack.spec.loader import parse_spec

F = "stacks/x.yaml"
# The passwords below (hunter2) are TEST-ONLY values.


def doc(uri: str, **host: Any) -> str:
    data = {
        "hosts": {
            "h": {
                "uri": uri,
                "capacity": {"vcpus": 2, "memory": "2GiB", "disk": "10GiB"},
                "pools": {"vms": {"path": "/var/lib/virtstack/pools/x"}},
                **host,
            }
        }
    }
    return yaml.safe_dump(data)


def problems(uri: str, **host: Any) -> list[str]:
    try:
        parse_spec(doc(uri, **host), F)
    except SpecError as err:
        return str(err).splitlines()
    return []


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+ssh://root@127.0.0.1:2222/system?keyfile=/etc/virtstack/id_ed25519&known_hosts=/etc/virtstack/kh",
        "qemu+ssh://ops@node/system?known_hosts_verify=normal&sshauth=agent,privkey&no_tty=1",
        "qemu+ssh://ops@node/system?socket=/run/libvirt/virtqemud-sock&mode=direct&proxy=native",
        "qemu+tls://node:16514/system?pkipath=/etc/virtstack/pki",
        "qemu://node/system?pkipath=/etc/pki/libvirt",
        "qemu:///system?socket=/run/libvirt/libvirt-sock",
        "qemu+ssh://ops@node/system",
        "qemu+ssh://deploy.bot@10.0.0.5:22/system",
        "qemu+tls://[fd00::5]:16514/system",
        "qemu+ssh://ops@Node-B.Example.org/system",
    ],
)
def test_allowed_uris(uri: str) -> None:
    assert problems(uri) == []


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        # The reported escape: libvirt runs this program locally instead of ssh.
        ("qemu+ssh://h/system?command=/tmp/evil", "parameter 'command' is not allowed: it names a program"),
        ("qemu+ssh://h/system?comm%61nd=/tmp/evil", "parameter 'command' is not allowed"),  # escaped name
        ("qemu+ssh://h/system?keyfile=/k;command=/tmp/evil", "separate parameters with '&', not ';'"),
        ("qemu+ssh://h/system?netcat=/tmp/evil", "parameter 'netcat' is not allowed: it names a program"),
        ("qemu+ssh://h/system?no_verify=1", "parameter 'no_verify' is not allowed: it turns off host key"),
        ("qemu+tls://h/system?no_verify=1", "parameter 'no_verify' is not allowed"),
        ("qemu+ssh://h/system?name=qemu:///system", "parameter 'name' is not allowed: it redirects"),
        ("qemu+ssh://h/system?known_hosts_verify=ignore", "known_hosts_verify must be one of normal, auto"),
        ("qemu+ssh://h/system?proxy=/bin/sh", "proxy must be one of auto, netcat, native"),
        ("qemu+ssh://h/system?keyfile=id_rsa", "keyfile must be an absolute path"),
        ("qemu+ssh://h/system?keyfile=/a/../etc/shadow", "keyfile must be an absolute path"),
        ("qemu+ssh://h/system?keyfile=/a&keyfile=/b", "parameter 'keyfile' is given twice"),
        ("qemu+ssh://h/system?sshauth=agent,x", "sshauth takes a list of"),
        ("qemu+ssh://h/system?mode=auto&foo=1", "parameter 'foo' is unknown for qemu+ssh"),
        (
            "qemu+tls://h/system?tls_priority=NORMAL:+NULL",
            "parameter 'tls_priority' is not allowed: it can weaken",
        ),
        ("qemu+ssh://h/system?socket=/run/x%3Breboot", "socket must be an absolute path of letters"),
        ("qemu+ssh://h/system?socket=/run/$(id)", "socket must be an absolute path of letters"),
        ("qemu+tls://h/system?keyfile=/k", "parameter 'keyfile' is unknown for qemu+tls"),
        ("qemu+unix:///system?command=/x", "parameter 'command' is not allowed"),
        ("test:///default?x=1", "parameter 'x' is unknown for test (allowed: none)"),
        # ssh reads an argument starting with '-' as an option: -oProxyCommand runs a program.
        ("qemu+ssh://-oProxyCommand=evil/system", "invalid host name"),
        ("qemu+ssh://-oProxyCommand=evil@node/system", "invalid user name"),
        ("qemu+ssh://%2DoProxyCommand=evil@node/system", "invalid user name"),
        ("qemu+ssh://ops@node_1/system", "invalid host name"),
    ],
)
def test_refused_parameters_say_why(uri: str, reason: str) -> None:
    [line] = problems(uri)
    assert line.startswith(f"{F}: hosts.h.uri: ")
    assert reason in line


@pytest.mark.parametrize("uri", ["qemu+ssh://ops:hunter2@h/system", "qemu+tls://ops:hunter2@h:16514/system"])
def test_a_password_in_a_uri_is_refused_without_echoing_it(uri: str) -> None:
    [line] = problems(uri)
    assert line.startswith(f"{F}: hosts.h.uri: the libvirt URI contains a password")
    assert "hunter2" not in line


def test_plain_tcp_needs_an_explicit_insecure_transport() -> None:
    [line] = problems("qemu+tcp://h/system")
    assert line.startswith(f"{F}: hosts.h.uri: qemu+tcp is unencrypted")
    assert "insecure_transport: true" in line
    assert problems("qemu+tcp://h/system", insecure_transport=True) == []
    [line] = problems("qemu+tcp://h/system", insecure_transport="yes")
    assert line.startswith(f"{F}: hosts.h.insecure_transport: ")


def test_mutated_uris_only_ever_raise_value_error() -> None:
    # 5,000 mutations of good URIs (fixed seed): a check that crashes instead of explaining would
    # end `virtstack validate` with a traceback.
    import random
    import string

    from virtstack.spec import check_uri

    rng = random.Random(11)
    alphabet = string.printable + "é[]@:%?&;=#/\x00"
    seeds = [
        "qemu+ssh://u@h:22/system?keyfile=/k&known_hosts=/kh",
        "qemu+tls://[::1]:16514/system?pkipath=/p",
        "qemu:///system?socket=/s",
    ]
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(5000):
        chars = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars))
            if rng.random() < 0.5:
                chars.insert(pos, rng.choice(alphabet))
            else:
                chars[pos] = rng.choice(alphabet)
        try:
            check_uri("".join(chars))
            outcomes["accepted"] += 1
        except ValueError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1000 and outcomes["accepted"] > 100, outcomes
