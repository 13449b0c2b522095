"""Issue 11: hostile or broken stack files end `virtstack validate` with one located line, exit 1.

Each scalar below ended `virtstack validate` with "error: unexpected ValueError/KeyError/
AttributeError" and a traceback log; the totals case kept it busy 180 s at 8.5 GB before it
printed "valid (10000000 VMs)".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from clifakes import make_services

from virtstack.cli.main import cli
from virtstack.errors import MAX_SHOWN_ISSUES

REPO = Path(__file__).resolve().parents[3]
DEV = (REPO / "stacks/dev.yaml").read_text()

BAD_SCALARS = {
    "!!int abc": "invalid !!int value 'abc' (expected a whole number such as 42, 0x2a or 0o52)",
    "!!bool maybe": "invalid !!bool value 'maybe' (expected true, false, yes, no, on or off)",
    "!!float x": "invalid !!float value 'x' (expected a number such as 1.5)",
    "!!timestamp 2001-99": "invalid !!timestamp value '2001-99' "
    "(expected a date such as 2001-12-14 or 2001-12-14T21:59:43Z)",
    "9" * 5000: "integer '99999999999999999999999…' is out of range (at most 64 bits)",
}


def validate(tmp_path: Path, text: str) -> tuple[int, str, str, Path]:
    spec = tmp_path / "stack.yaml"
    spec.write_text(text)
    services = make_services(tmp_path / "project")
    result = CliRunner().invoke(cli, ["validate", "-f", str(spec)], obj=services)
    return result.exit_code, result.stdout, result.stderr, spec


@pytest.mark.parametrize("bad", BAD_SCALARS, ids=[key[:20] for key in BAD_SCALARS])
def test_bad_scalar_is_one_located_line(tmp_path: Path, bad: str) -> None:
    before, after = DEV.split("    vcpus: 1\n", 1)
    code, out, err, spec = validate(tmp_path, f"{before}    vcpus: {bad}\n{after}")
    line = before.count("\n") + 1
    assert (code, out) == (1, "")
    assert err == f"{spec}:{line}:12: {BAD_SCALARS[bad]}\n"
    assert "unexpected" not in err and "Traceback" not in err
    assert not (tmp_path / "project/logs").exists()  # no crash log was written


@pytest.mark.usefixtures("refuse_expansion")  # was 180 s and 8.5 GB
def test_ten_million_vms_in_eleven_kilobytes_are_refused_before_expansion(tmp_path: Path) -> None:
    groups = "".join(
        f"  g{i}: {{count: 10000, image: debian-12, vcpus: 1, memory: 512MiB, disk: 4GiB}}\n"
        for i in range(1000)
    )
    head = DEV.split("vms:\n", 1)[0]
    code, out, err, spec = validate(tmp_path, f"{head}vms:\n{groups}")
    assert (code, out) == (1, "")
    assert err == (
        f"{spec}: vms: 10,000,000 VMs (counts added over all groups) is more than one stack may have "
        "(at most 10,000)\n"
    )


def test_thousands_of_problems_print_a_bounded_list(tmp_path: Path) -> None:
    # 5,000 VMs that fit nowhere: one line each before, now the first ones and a count.
    head = DEV.split("vms:\n", 1)[0]
    code, out, err, spec = validate(
        tmp_path,
        f"{head}vms:\n  big: {{count: 5000, image: debian-12, vcpus: 64, memory: 512MiB, disk: 4GiB}}\n",
    )
    lines = err.splitlines()
    assert (code, out) == (1, "")
    assert len(lines) == MAX_SHOWN_ISSUES + 1
    assert lines[0].startswith(f"{spec}: vms.big: cannot be placed: no host has 64 vCPUs free")
    assert lines[-1] == f"{spec}: … and {5000 - MAX_SHOWN_ISSUES:,} more problems (fix the ones above first)"


def test_bad_scalar_in_the_stack_settings_file_is_one_located_line(tmp_path: Path) -> None:
    # Pulumi.<stack>.yaml comes through pull requests too; it was read with yaml.safe_load.
    services = make_services(tmp_path / "project")
    (tmp_path / "project/Pulumi.x.yaml").write_text("config:\n  virtstack:spec: !!int abc\n")
    result = CliRunner().invoke(cli, ["validate", "-s", "x"], obj=services)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Pulumi.x.yaml:2:19: invalid !!int value 'abc' (expected a whole number such as 42, 0x2a or 0o52)\n"
    )
