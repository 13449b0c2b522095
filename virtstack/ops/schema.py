"""JSON Schema of the stack file, from the pydantic models in virtstack.spec.

Public API:
    stack_schema() -> dict        the schema (JSON Schema 2020-12), for editors and CI
    schema_text() -> str          it as the text committed in schema/stack.schema.json

The scalars of virtstack.spec (sizes, names, URIs, addresses…) carry the JSON Schema of what they
accept (virtstack.spec.scalars.Scalar), next to their validator.  A plain validator that does not
come with one is an error (the unit test that keeps schema/stack.schema.json up to date then fails).

Editors: put `# yaml-language-server: $schema=../schema/stack.schema.json` at the top of a stack
file (yaml-language-server, used by VS Code's YAML extension, Neovim, Helix…).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from virtstack.spec import NAME_PATTERN, StackSpec

__all__ = ["schema_text", "stack_schema"]


class _StackSchemaGenerator(GenerateJsonSchema):
    def function_plain_schema(self, schema: core_schema.PlainValidatorFunctionSchema) -> JsonSchemaValue:
        # Only reached for a plain validator without a Scalar annotation (which answers itself).
        function = schema["function"]["function"]
        name = getattr(function, "__name__", repr(function))
        raise ValueError(f"the validator {name} has no JSON Schema: declare its type with Scalar")


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
