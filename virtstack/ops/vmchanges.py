"""How the plan words a VM's feature changes (issue 17): the graceful shutdown a restart waits for,
what a changed cloud-init does (`on_cloud_init_change`), firmware, TPM and CPU. Pure; used by
virtstack.ops.classify."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from virtstack.props import DEFAULT_SHUTDOWN_TIMEOUT

DOMAIN_FEATURE_KEYS = frozenset(
    {
        "firmware",
        "tpm",
        "cpu_mode",
        "cpu_model",
        "shutdown_timeout",
        "cloud_init_change",
        "seed_instance_id",
        "cloud_init_instance",
    }
)

_CLOUD_INIT_WORDS = {
    "reseed": "cloud-init changed: reseed (a new seed with a new instance-id; the VM reboots, "
    "its disks are kept)",
    "replace": "cloud-init changed: replace (the root disk is recreated from its image: its data is lost)",
    "ignore": "cloud-init changed: ignore (the running VM is not rebooted; cloud-init applies the new seed "
    "at its next boot)",
}


def shutdown_timeout(props: Mapping[str, Any]) -> int:
    value = props.get("shutdown_timeout")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return DEFAULT_SHUTDOWN_TIMEOUT


def graceful_wait(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """The wait a restart of a running VM costs: its ACPI shutdown, up to `shutdown_timeout` seconds
    (the new value: the provider applies it), before it is forced off."""
    seconds = shutdown_timeout(new or old)
    if seconds == 0:
        return ("forced off at once (shutdown_timeout 0)",)
    return (f"waits up to {seconds} s for an ACPI shutdown",)


def deleted_domain(old: Mapping[str, Any]) -> tuple[str, ...]:
    texts = ["the VM is removed"]
    if old.get("running", True) is not False:
        seconds = shutdown_timeout(old)
        texts.append(
            f"ACPI shutdown first, up to {seconds} s"
            if seconds
            else "forced off at once (shutdown_timeout 0)"
        )
    if old.get("firmware") in ("uefi", "uefi-secure"):
        texts.append("its NVRAM goes with it")
    if old.get("tpm"):
        texts.append("its TPM state goes with it")
    return tuple(texts)


def feature_change(key: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    before, after = old.get(key), new.get(key)
    if key == "seed_instance_id":
        if not before:
            return "records the cloud-init instance-id of its seed; nothing restarts"
        return _CLOUD_INIT_WORDS.get(
            str(new.get("cloud_init_change") or "reseed"), _CLOUD_INIT_WORDS["reseed"]
        )
    if key == "cloud_init_instance":  # a root disk under `on_cloud_init_change: replace`
        if not before:
            return "records the cloud-init instance-id (on_cloud_init_change: replace); nothing changes"
        return _CLOUD_INIT_WORDS["replace"]
    if key == "firmware":
        return f"firmware {before or 'bios'} → {after or 'bios'}"
    if key == "tpm":
        return "TPM added" if after else "TPM removed (its state is deleted)"
    if key == "shutdown_timeout":
        return f"shutdown_timeout {shutdown_timeout(old)} s → {shutdown_timeout(new)} s"
    if key == "cloud_init_change":
        return f"on_cloud_init_change {before or 'reseed'} → {after or 'reseed'}"
    if key in ("cpu_mode", "cpu_model"):
        return f"CPU {_cpu(old)} → {_cpu(new)}"
    return f"{key} changed"


def _cpu(props: Mapping[str, Any]) -> str:
    mode = str(props.get("cpu_mode") or "") or "default"
    model = props.get("cpu_model")
    return f"{mode} {model}" if model else mode
