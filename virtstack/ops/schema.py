"""JSON Schema of the stack file, from the pydantic models in virtstack.spec.

Public API:
    stack_schema() -> dict        the schema (JSON Schema 2020-12), for editors and CI
    schema_text() -> str          it as the text committed in schema/stack.schema.json

virtstack.spec validates most scalars with plain validator functions (sizes, names, URIs, addresses…)
whose messages suit people editing YAML; pydantic cannot derive a JSON Schema from those, so each
one is mapped here to the schema of what it accepts.  A validator this module does not know is an
error (the unit test that keeps schema/stack.schema.json up to date then fails).

Editors: put `# yaml-language-server: $schema=../schema/stack.schema.json` at the top of a stack
file (yaml-language-server, used by VS Code's YAML extension, Neovim, Helix…).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from virtstack.spec import MIN_MEMORY, NAME_PATTERN, StackSpec

__all__ = ["schema_text", "stack_schema"]


_SIZE_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?|\.[0-9]+)\s*([KkMmGgTtPp][Ii]?[Bb]?|[Bb])?\s*$"
_SIZE_HELP = (
    "Bytes, or a number with a unit: 512MiB, 4GiB, 1.5GiB (KiB/MiB/GiB/TiB and Ki/Mi/Gi/Ti are "
    "1024-based), 200GB or 100M (KB/MB/GB/TB and K/M/G/T are 1000-based)."
)


def _size(minimum: int) -> JsonSchemaValue:
    return {
        "anyOf": [
            {"type": "integer", "minimum": minimum},
            {"type": "string", "pattern": _SIZE_PATTERN},
        ],
        "description": _SIZE_HELP,
    }


def _string(pattern: str | None = None, description: str | None = None, **extra: Any) -> JsonSchemaValue:
    schema: JsonSchemaValue = {"type": "string", **extra}
    if pattern:
        schema["pattern"] = pattern
    if description:
        schema["description"] = description
    return schema


# virtstack.spec's plain validators, by function name -> the JSON Schema of what each accepts.
VALIDATOR_SCHEMAS: dict[str, JsonSchemaValue] = {
    "check_name": _string(NAME_PATTERN, "lowercase letters, digits and '-', at most 63 characters"),
    "_check_memory": _size(MIN_MEMORY),
    "_check_positive_size": _size(1),
    "_check_disk_size": _size(1),
    "check_ipv4": _string(None, "an IPv4 address without prefix", format="ipv4"),
    "_check_cidr": _string(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$", "an IPv4 network, e.g. 10.77.0.0/24"),
    "_check_mac": _string(
        r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$", "a unicast MAC, e.g. 52:54:00:12:34:56"
    ),
    "check_uri": _string(
        r"^(qemu|qemu\+ssh|qemu\+tls|qemu\+tcp|qemu\+unix|test)://",
        "a libvirt URI: qemu:///system, qemu+ssh://user@host/system, test:///default",
    ),
    "_check_abs_path": _string("^/", "an absolute path"),
    "_check_bridge": _string(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$", "an existing host bridge, e.g. br0"),
    "_check_hostname": _string(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", "one DNS label"),
    "_check_domain": _string(None, "a DNS domain, e.g. lab.example.com"),
    "_check_username": _string(r"^[a-z_][a-z0-9_-]{0,31}$", "a Linux user name"),
    "_check_ssh_key": _string(r"^\s*(ssh-|ecdsa-|sk-)", "an OpenSSH public key (the .pub file)"),
    "_check_sudo": {
        "anyOf": [{"type": "boolean"}, {"type": "string"}, {"type": "null"}],
        "description": "true for ALL=(ALL) NOPASSWD:ALL, a sudoers rule, or false",
    },
    "_check_package": _string(r"^\S+$", "one package name"),
    "_check_runcmd": {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
        "description": "a shell command, or a command as a list of arguments",
    },
    "_check_permissions": _string(r"^0?[0-7]{3,4}$", "an octal mode as a quoted string, e.g. '0644'"),
    "_check_owner": _string(r"^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$", "user or user:group"),
    "_check_image_source": _string(
        None, "a local path in an image directory (relative to the project root) or an https URL"
    ),
    "_check_sha256": _string("^[0-9a-fA-F]{64}$", "the image's SHA-256, as sha256sum prints it"),
    "_check_password_env": _string(r"^VIRTSTACK_PASSWORD_[A-Z0-9_]+$", "a VIRTSTACK_PASSWORD_* variable"),
    "_check_secret_file": _string(None, "a file in the secrets directory (VIRTSTACK_SECRETS_DIR)"),
}


class _StackSchemaGenerator(GenerateJsonSchema):
    def function_plain_schema(self, schema: core_schema.PlainValidatorFunctionSchema) -> JsonSchemaValue:
        function = schema["function"]["function"]
        name = getattr(function, "__name__", repr(function))
        if name not in VALIDATOR_SCHEMAS:
            raise ValueError(f"virtstack.ops.schema has no JSON Schema for the validator {name}")
        return json.loads(json.dumps(VALIDATOR_SCHEMAS[name]))  # a copy the generator may change


def _name_keys(node: Any) -> None:
    """dict[Name, X] comes out as patternProperties, which lets any other key through; make it
    additionalProperties + propertyNames so a bad name is reported."""
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and list(patterns) == [NAME_PATTERN]:
            node["additionalProperties"] = patterns[NAME_PATTERN]
            node["propertyNames"] = {"pattern": NAME_PATTERN}
            del node["patternProperties"]
        for value in node.values():
            _name_keys(value)
    elif isinstance(node, list):
        for value in node:
            _name_keys(value)


def stack_schema() -> dict[str, Any]:
    body = StackSpec.model_json_schema(schema_generator=_StackSchemaGenerator, mode="validation")
    _name_keys(body)
    # Top-level keys starting with x- hold YAML anchors and are ignored (virtstack.spec).
    body.setdefault("patternProperties", {})["^x-"] = {}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "virtstack stack file",
        **{k: v for k, v in body.items() if k != "title"},
    }


def schema_text() -> str:
    return json.dumps(stack_schema(), indent=2, ensure_ascii=False) + "\n"
