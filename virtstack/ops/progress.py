"""Live progress lines from engine events while `up` or `destroy` works.

Public API:
    Progress(echo, clock=time.monotonic)
        Call it with each EngineEvent as it arrives; it echoes one line when an operation on a libvirt
        object starts, ends or fails, and remembers what was done:
            [  3.2s] vm web-1: root disk: creating…
            [  4.0s] vm web-1: root disk: created (0.8s)
        .done -> dict[str, int]  (verb -> count), .failed -> list[str], .summary() -> str

Refresh steps (reading the real state before `up`) and unchanged objects print nothing.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from enum import Enum

from pulumi.automation import events

from virtstack.ops.classify import Action, classify
from virtstack.ops.resources import ResourceInfo, describe, is_virtstack_resource

__all__ = ["Progress"]

_STARTING = {
    "create": "creating",
    "update": "updating in place",
    "delete": "deleting",
    "create-replacement": "creating the replacement",
    "delete-replaced": "deleting the old one",
}
_FINISHED = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "create-replacement": "replacement created",
    "delete-replaced": "old one deleted",
}
# What counts in the summary, by the op that completes an object's change.
_COUNTED = {"create": "created", "update": "updated", "delete": "deleted", "create-replacement": "replaced"}


def _op(step: events.StepEventMetadata) -> str:
    return step.op.value if isinstance(step.op, Enum) else str(step.op)


_LEVELS = re.compile(r"(info|warning): ")


class Progress:
    def __init__(self, echo: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.echo = echo
        self.clock = clock
        self.start = clock()
        self.started: dict[tuple[str, str], float] = {}
        self.done: dict[str, int] = {}
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def restart(self) -> None:
        """Count elapsed time from now (when the engine starts changing things)."""
        self.start = self.clock()

    def _line(self, info: ResourceInfo, text: str) -> None:
        elapsed = self.clock() - self.start
        self.echo(f"[{elapsed:6.1f}s] {info.owner}: {info.label}: {text}")

    def _starting(self, step: events.StepEventMetadata, op: str) -> str:
        if op == "update" and step.type.endswith(":Domain"):
            plan = classify([step])
            changes = plan.changes
            if changes and changes[0].action is Action.REDEFINE:
                return "redefining (the VM restarts)…"
        return _STARTING[op] + "…"

    def __call__(self, event: events.EngineEvent) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, event: events.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            step = event.resource_pre_event.metadata
            op = _op(step)
            if op in _STARTING and is_virtstack_resource(step):
                self.started[(step.urn, op)] = self.clock()
                self._line(describe(step), self._starting(step, op))
        elif event.res_outputs_event is not None:
            step = event.res_outputs_event.metadata
            op = _op(step)
            if op in _FINISHED and is_virtstack_resource(step):
                began = self.started.pop((step.urn, op), None)
                took = f" ({self.clock() - began:.1f}s)" if began is not None else ""
                self._line(describe(step), _FINISHED[op] + took)
                if op in _COUNTED:
                    self.done[_COUNTED[op]] = self.done.get(_COUNTED[op], 0) + 1
        elif event.diagnostic_event is not None:
            # What the provider says of an object as it works on it (a disk kept in the trash, a
            # pool or network kept because others still use it): the person running `up` or
            # `destroy` must see it, not only the engine log.
            # A dynamic provider's log reaches the engine through its stderr: severity "info#err", no
            # object, the level in front of the text (which names the object itself).
            # Two lines written close together can arrive as one message, without a newline between.
            diag = event.diagnostic_event
            parts = _LEVELS.split(diag.message.strip())
            if diag.severity == "info#err" and not diag.ephemeral and len(parts) > 1 and not parts[0]:
                elapsed = self.clock() - self.start
                for level, said in zip(parts[1::2], parts[2::2], strict=True):
                    if said.strip():
                        prefix = "warning: " if level == "warning" else ""
                        self.echo(f"[{elapsed:6.1f}s] {prefix}{said.strip()}")
        elif event.res_op_failed_event is not None:
            step = event.res_op_failed_event.metadata
            if is_virtstack_resource(step):
                info = describe(step)
                self.failed.append(f"{info.owner}: {info.label}")
                self._line(info, "FAILED")

    def summary(self) -> str:
        elapsed = self.clock() - self.start
        order = ["created", "updated", "replaced", "deleted"]
        parts = [f"{self.done[v]} {v}" for v in order if self.done.get(v)]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return f"{', '.join(parts) if parts else 'nothing changed'} in {elapsed:.0f}s"
