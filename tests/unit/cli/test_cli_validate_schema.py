"""`virtstack validate` and `virtstack schema`: exact output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import yaml
from click.testing import CliRunner
from clifakes import STACK_YAML, make_services

from virtstack.cli.main import cli
from virtstack.ops.schema import schema_text, stack_schema
from virtstack.units import parse_size

PROJECT_ROOT = Path(__file__).resolve().parents[3]

VALID_OUTPUT = """\
stacks/rec.yaml: valid (1 VM, 1 host)

VM      HOST   VCPUS  MEMORY   DISK
rec-vm  local  1      384 MiB  4 GiB

HOST   VMS  VCPUS        MEMORY                 DISK
local  1    1 / 2 (50%)  384 MiB / 2 GiB (19%)  4 GiB / 20 GiB (20%)
"""


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), obj=make_services(tmp_path / "project"))
    return result.exit_code, result.stdout, result.stderr


def test_validate_prints_the_placement_table(tmp_path: Path) -> None:
    make_services(tmp_path / "project")
    (tmp_path / "project/stacks/rec.yaml").write_text(STACK_YAML)
    assert run(tmp_path, "validate", "-s", "rec") == (0, VALID_OUTPUT, "")


def test_validate_a_file(tmp_path: Path) -> None:
    spec = tmp_path / "two.yaml"
    data = yaml.safe_load(STACK_YAML)
    data["vms"]["rec-vm"]["count"] = 2
    del data["vms"]["rec-vm"]["nics"][0]["ip"]
    spec.write_text(yaml.safe_dump(data))
    code, out, err = run(tmp_path, "validate", "-f", str(spec))
    assert (code, err) == (0, "")
    assert out == (
        f"{spec}: valid (2 VMs, 1 host)\n"
        "\n"
        "VM        HOST   VCPUS  MEMORY   DISK\n"
        "rec-vm    local  1      384 MiB  4 GiB\n"
        "rec-vm-2  local  1      384 MiB  4 GiB\n"
        "\n"
        "HOST   VMS  VCPUS         MEMORY                 DISK\n"
        "local  2    2 / 2 (100%)  768 MiB / 2 GiB (38%)  8 GiB / 20 GiB (40%)\n"
    )


def test_validate_uses_the_stacks_configured_spec(tmp_path: Path) -> None:
    make_services(tmp_path / "project")
    (tmp_path / "elsewhere.yaml").write_text(STACK_YAML)
    (tmp_path / "project/Pulumi.rec.yaml").write_text(
        f"config:\n  virtstack:spec: {tmp_path}/elsewhere.yaml\n"
    )
    code, out, _ = run(tmp_path, "validate", "-s", "rec")
    assert code == 0
    assert out.splitlines()[0] == f"{tmp_path}/elsewhere.yaml: valid (1 VM, 1 host)"


def test_validate_reports_every_error_one_per_line(tmp_path: Path) -> None:
    data = yaml.safe_load(STACK_YAML)
    vm = data["vms"]["rec-vm"]
    vm["vcpu"] = vm.pop("vcpus")
    vm["memory"] = "64MiB"
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(data))
    code, out, err = run(tmp_path, "validate", "-f", str(spec))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{spec}: vms.rec-vm.vcpus: required",
        f"{spec}: vms.rec-vm.memory: must be at least 128 MiB (got 64 MiB)",
        f"{spec}: vms.rec-vm: unknown key 'vcpu' (did you mean 'vcpus'?)",
    ]


def test_validate_reports_placement_errors(tmp_path: Path) -> None:
    data = yaml.safe_load(STACK_YAML)
    data["vms"]["rec-vm"].update(count=3, vcpus=1)
    del data["vms"]["rec-vm"]["nics"][0]["ip"]
    spec = tmp_path / "full.yaml"
    spec.write_text(yaml.safe_dump(data))
    assert run(tmp_path, "validate", "-f", str(spec)) == (
        1,
        "",
        f"{spec}: vms.rec-vm (instance rec-vm-3): cannot be placed: no host has 1 vCPU free (local 0 free)\n",
    )


def test_validate_a_missing_stack_file(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "validate", "-s", "nope")
    assert (code, out) == (1, "")
    assert err == "stacks/nope.yaml: cannot read the file: No such file or directory\n"


def test_validate_needs_neither_engine_nor_libvirt(tmp_path: Path) -> None:
    def no_engine(*_args: object) -> None:
        raise AssertionError("validate must not start the engine")

    services = make_services(tmp_path / "project")
    services.engine_factory = no_engine  # type: ignore[assignment]
    (tmp_path / "project/stacks/rec.yaml").write_text(STACK_YAML)
    assert CliRunner().invoke(cli, ["validate", "-s", "rec"], obj=services).exit_code == 0


# -------------------------------------------------------------------------------------------- schema


def test_schema_command_prints_the_schema(tmp_path: Path) -> None:
    assert run(tmp_path, "schema") == (0, schema_text(), "")


def test_committed_schema_is_up_to_date() -> None:
    committed = (PROJECT_ROOT / "schema/stack.schema.json").read_text()
    assert committed == schema_text(), "run `virtstack schema --out schema/stack.schema.json` and commit it"


def test_schema_sizes_accept_bytes_or_strings_with_units() -> None:
    schema = stack_schema()
    memory = schema["$defs"]["VmSpec"]["properties"]["memory"]
    integer, string = memory["anyOf"]
    assert integer == {"type": "integer", "minimum": 128 * 1024**2}
    import re

    for text in ("512MiB", "4 GiB", "1.5GiB", "200GB", "100M", "4096", "2Ti"):
        assert re.match(string["pattern"], text), text
        parse_size(text)  # the loader agrees
    for text in ("lots", "-1GiB", "4 gigs"):
        assert not re.match(string["pattern"], text), text


def test_schema_names_and_extension_keys() -> None:
    schema = stack_schema()
    assert schema["additionalProperties"] is False
    assert schema["patternProperties"] == {"^x-": {}}
    assert schema["properties"]["vms"]["propertyNames"] == {"pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}
    assert schema["properties"]["vms"]["additionalProperties"] == {"$ref": "#/$defs/VmSpec"}
    assert json.loads(schema_text()) == schema


def test_readme_shows_how_to_point_editors_at_the_schema() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "# yaml-language-server: $schema=../schema/stack.schema.json" in readme


def test_a_validator_without_its_schema_is_refused() -> None:
    """Every scalar carries its JSON Schema (virtstack.spec.scalars.Scalar); a bare plain validator
    would publish an empty schema that accepts anything, so the generator refuses it."""
    import pytest
    from pydantic import BaseModel, PlainValidator

    from virtstack.ops.schema import _StackSchemaGenerator
    from virtstack.spec.scalars import Scalar, string

    def check_colour(value: object) -> str:
        return str(value)

    class Bare(BaseModel):
        colour: Annotated[str, PlainValidator(check_colour)]

    class Declared(BaseModel):
        colour: Annotated[str, Scalar(check_colour, string("^[a-z]+$", "a colour"))]

    with pytest.raises(ValueError, match="check_colour has no JSON Schema"):
        Bare.model_json_schema(schema_generator=_StackSchemaGenerator)
    declared = Declared.model_json_schema(schema_generator=_StackSchemaGenerator)
    colour = declared["properties"]["colour"]
    assert (colour["type"], colour["pattern"], colour["description"]) == ("string", "^[a-z]+$", "a colour")
