"""The load path's shortcuts (issue 15: `validate -f` of 10,000 VMs in under a second) give exactly
what the general code gives: the dotted-quad reader against ipaddress, the plain-scalar tag cache
against PyYAML's resolver, and the lazily imported commands against the command list."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import AddressValueError, IPv4Address

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from virtstack.spec.scalars import check_ipv4
from virtstack.spec.yamldoc import parse_yaml


def _reference(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text)
    except AddressValueError:
        return None


_VALID = ["0.0.0.0", "10.0.0.1", "255.255.255.255", "192.168.1.10", "1.2.3.4", "99.100.199.249"]
# Arabic-Indic digits: str.isdigit() says yes, ipaddress says no.
_INVALID = ["256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3", "\u0661.\u0662.\u0663.\u0664"]
_INVALID += [" 1.2.3.4", "1.2.3.4\n", "300.0.0.0"]


@pytest.mark.parametrize("text", [*_VALID, *_INVALID])
def test_dotted_quad_reads_as_ipaddress_does(text: str) -> None:
    want = _reference(text)
    if want is None:
        with pytest.raises(ValueError):
            check_ipv4(text)
    else:
        got = check_ipv4(text)
        assert type(got) is IPv4Address and got == want


@given(st.lists(st.text(alphabet="0123456789", min_size=0, max_size=4), min_size=1, max_size=5))
def test_dotted_quad_property(parts: list[str]) -> None:
    text = ".".join(parts)
    want = _reference(text)
    if want is None:
        with pytest.raises(ValueError):
            check_ipv4(text)
    else:
        assert check_ipv4(text) == want


# Plain scalars that resolve to every implicit tag, repeated (the cache's hits) and quoted twins
# (which must stay strings though the same text is cached as a plain scalar).
_SCALARS = [
    "1",
    "0x1f",
    "1.5",
    "true",
    "no",
    "~",
    "null",
    "abc",
    "1_000",
    ".inf",
    "2001-01-01",
]


@given(
    st.lists(st.sampled_from(_SCALARS), min_size=1, max_size=30),
    st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_plain_tag_cache_matches_safe_load(values: list[str], quoted: list[bool]) -> None:
    items = [f"'{v}'" if q else v for v, q in zip(values, quoted, strict=False)]
    text = (
        "l:\n"
        + "".join(f"  - {item}\n" for item in items)
        + "m:\n"
        + "".join(f"  k{i}: {item}\n" for i, item in enumerate(items))
    )
    data, issues = parse_yaml(text, "t.yaml")
    assert issues == []
    assert data == yaml.safe_load(text)


def test_validate_does_not_import_the_engine() -> None:
    code = (
        "import sys\n"
        "from virtstack.cli.main import cli\n"
        "cli.get_command(None, 'validate')\n"
        "print(sorted(m for m in ('pulumi', 'grpc', 'virtstack.ops.engine') if m in sys.modules))\n"
        "print(cli.list_commands(None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "[]",
        "['comment', 'destroy', 'doctor', 'drift', 'env', 'hosts', 'import', 'inventory', 'plan', "
        "'rebalance', 'schema', 'snapshot', 'trash', 'up', 'validate']",
    ]


def test_every_listed_command_module_registers_its_own_name() -> None:
    from virtstack.cli.main import COMMANDS, cli

    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None and command.name == name
