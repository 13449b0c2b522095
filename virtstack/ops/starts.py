"""When `up` started each domain, from the engine's events, so the check after `up`
(virtstack.ops.verify) watches each VM until a few seconds after its own start instead of for a few
more seconds after the whole apply: VMs started early in a long apply are already past it.

A domain's create (or update, or replacement) is reported done after libvirt has started it (the
provider starts it inside the operation, in waves: virtstack.provider.boot), so the time the
engine's outputs event arrives is never earlier than the real start: counting from it only ever
watches longer than the settle window.

Public API:
    DomainStarts(clock=time.monotonic)   call it with each EngineEvent; .at: domain name -> clock time
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum

from pulumi.automation import events

__all__ = ["DomainStarts"]

# The operations after which a domain may have been (re)started.
_STARTING_OPS = {"create", "update", "replace", "create-replacement"}


class DomainStarts:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.at: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, event: events.EngineEvent) -> None:
        done = event.res_outputs_event
        if done is None:
            return
        step = done.metadata
        op = step.op.value if isinstance(step.op, Enum) else str(step.op)
        if not step.type.endswith(":Domain") or op not in _STARTING_OPS or step.new is None:
            return
        name = (step.new.outputs or {}).get("name")
        if isinstance(name, str) and name:
            with self._lock:
                self.at[name] = self.clock()
