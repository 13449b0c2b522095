"""Test doubles for the CLI: recorded engine events, a fake engine, services for CliRunner."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pulumi.automation import events

from virtstack.cli.common import Services
from virtstack.ops.engine import OnEvent
from virtstack.ops.project import Project

EVENTS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "events"
FIXED_NOW = datetime(2026, 1, 2, 3, 4, 5)


def load_events(scenario: str) -> list[events.EngineEvent]:
    """A stream recorded from the real engine by tests/fixtures/events/record.py."""
    data = json.loads((EVENTS_DIR / f"{scenario}.json").read_text())
    return [events.EngineEvent.from_json(event) for event in data["events"]]


class FakeEngine:
    """EngineApi replaying recorded events; remembers every call."""

    def __init__(
        self,
        preview: str | None = None,
        up: str | None = None,
        refresh: str | None = None,
        destroy_preview: str | None = None,
        outputs: Mapping[str, Any] | None = None,
        raises: BaseException | None = None,
    ) -> None:
        self.scenarios = {
            "preview": preview,
            "up": up,
            "refresh": refresh,
            "destroy_preview": destroy_preview,
        }
        self._outputs = dict(outputs or {})
        self.raises = raises
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _replay(self, kind: str, on_event: OnEvent | None) -> list[events.EngineEvent]:
        if self.raises is not None:
            raise self.raises
        scenario = self.scenarios[kind]
        stream = load_events(scenario) if scenario else []
        for event in stream:
            if on_event is not None:
                on_event(event)
        return stream

    def preview(
        self,
        stack: str,
        *,
        refresh: bool = True,
        plan_file: Path | None = None,
        on_event: OnEvent | None = None,
    ) -> list[events.EngineEvent]:
        self.calls.append(("preview", {"stack": stack, "refresh": refresh, "plan_file": plan_file}))
        stream = self._replay("preview", on_event)
        if plan_file is not None:
            plan_file.write_text("{}")  # the engine saves its update plan here
        return stream

    def up(
        self,
        stack: str,
        *,
        plan_file: Path | None = None,
        refresh: bool = True,
        on_event: OnEvent | None = None,
    ) -> dict[str, Any]:
        self.calls.append(("up", {"stack": stack, "plan_file": plan_file, "plan_saved": bool(plan_file)}))
        self._replay("up", on_event)
        return self._outputs

    def preview_refresh(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]:
        self.calls.append(("preview_refresh", {"stack": stack}))
        return self._replay("refresh", on_event)

    def preview_destroy(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]:
        self.calls.append(("preview_destroy", {"stack": stack}))
        return self._replay("destroy_preview", on_event)

    def destroy(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]:
        self.calls.append(("destroy", {"stack": stack}))
        return self._replay("destroy_preview", on_event)  # the same steps, as they happen

    def outputs(self, stack: str) -> dict[str, Any]:
        self.calls.append(("outputs", {"stack": stack}))
        if self.raises is not None:
            raise self.raises
        return self._outputs

    def previous_placement(self, stack: str) -> dict[str, str]:
        # Not recorded as a call: the real engine reads it once and passes it to its own runs.
        placement = self._outputs.get("placement")
        return dict(placement) if isinstance(placement, dict) else {}

    def interrupt(self, force: bool = False) -> bool:
        self.calls.append(("interrupt", {"force": force}))
        return True

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def make_project(root: Path) -> Project:
    """A minimal project directory (what find_project looks for) with its logs under root/logs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Pulumi.yaml").write_text("name: virtstack\nruntime: python\n")
    (root / "__main__.py").write_text("")
    (root / "stacks").mkdir(exist_ok=True)
    return Project(root, root / "logs")


def make_services(
    root: Path,
    engine: Any = None,
    *,
    tty: bool = False,
    leases: Callable[[str, str], list[str]] | None = None,
    environ: Mapping[str, str] | None = None,
    vm_problems: list[str] | None = None,
    verify_calls: list[dict[str, Any]] | None = None,
) -> Services:
    project = make_project(root)

    def verify(outputs: Mapping[str, Any], **kwargs: Any) -> list[str]:
        if verify_calls is not None:
            verify_calls.append({"outputs": outputs, **kwargs})
        return list(vm_problems or [])

    def open_libvirt(_uri: str) -> Any:
        import libvirt

        return libvirt.open("test:///default")  # libvirt's in-memory driver: hermetic

    return Services(
        environ=dict(environ or {}),
        verify_vms=verify,
        open_libvirt=open_libvirt,
        project_factory=lambda _env: project,
        engine_factory=(lambda _project, _env: engine) if engine is not None else None,
        lease_lookup=leases or (lambda _uri, _domain: []),
        stdin_is_tty=lambda: tty,
        now=lambda: FIXED_NOW,
        clock=lambda: 0.0,
    )


# A valid one-VM stack file, like the recorded one.
STACK_YAML = """\
hosts:
  local:
    uri: qemu:///system
    capacity: {vcpus: 2, memory: 2GiB, disk: 20GiB}
    pools:
      rec: {path: /var/lib/virtstack/pools/rec}
    networks:
      rec: {mode: isolated, cidr: 10.152.77.0/24}
images:
  debian-12: {source: /var/cache/virtstack/images/debian-12.qcow2}
vms:
  rec-vm:
    image: debian-12
    vcpus: 1
    memory: 384MiB
    disk: 3GiB
    data_disks: [{name: data, size: 1GiB}]
    nics: [{network: rec, ip: 10.152.77.10}]
"""
