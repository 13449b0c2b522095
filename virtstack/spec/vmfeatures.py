"""The stack file's VM feature settings (issue 17): firmware, TPM, CPU, graceful changes, cloud-init
changes. Models and literals only; no I/O, no libvirt. (virtstack.spec.models uses them.)"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from virtstack.spec.scalars import issues_error

Firmware = Literal["bios", "uefi", "uefi-secure"]
CloudInitChange = Literal["reseed", "replace", "ignore"]
CpuMode = Literal["host-passthrough", "host-model", "custom"]

DEFAULT_FIRMWARE: Firmware = "bios"
DEFAULT_SHUTDOWN_TIMEOUT = 60  # seconds an ACPI shutdown may take before the VM is forced off
DEFAULT_CLOUD_INIT_CHANGE: CloudInitChange = "reseed"

# libvirt/QEMU CPU model names: Haswell-noTSX-IBRS, EPYC-Rome, qemu64, Skylake-Server-v4...
_CPU_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

ShutdownTimeout = Annotated[int, Field(strict=True, ge=0, le=3600)]


class CpuSpec(BaseModel):
    """The guest CPU: `host-passthrough` (the host's CPU as is), `host-model` (libvirt's closest
    named model) or `custom` with `model` (a QEMU CPU model name, e.g. Haswell-noTSX)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    mode: CpuMode
    model: str | None = None

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is not None and not _CPU_MODEL_RE.match(value):
            raise ValueError("a QEMU CPU model name (letters, digits, '.', '_', '-'), e.g. Haswell-noTSX")
        return value

    @model_validator(mode="after")
    def _model_with_custom(self) -> CpuSpec:
        if self.mode == "custom" and self.model is None:
            raise issues_error([(("model",), "required when mode is custom (e.g. model: Haswell-noTSX)")])
        if self.mode != "custom" and self.model is not None:
            raise issues_error([(("model",), f"only allowed when mode is custom (not {self.mode})")])
        return self
