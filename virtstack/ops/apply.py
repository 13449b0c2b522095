"""The flows behind `plan`, `up`, `drift` and `destroy`, on any EngineApi.

Public API:
    make_plan(engine, stack, plan_file=None) -> Plan
        A refreshing preview (the real state is read first, so a stopped or missing VM shows up as
        the change that heals it), classified (virtstack.ops.classify).
    apply_stack(engine, stack, *, allow_data_loss, confirm, on_plan, on_event, run) -> Applied
        1. preview and save the engine's update plan (`pulumi preview --save-plan`);
        2. refuse when the plan destroys data of VMs that stay, unless allow_data_loss;
        3. nothing to do: stop; else confirm(plan) (the CLI asks, or --yes);
        4. `up --plan`: the engine applies exactly the previewed operations and fails on anything
           else (a spec or the world that changed in between), so what was checked is what happens.
    check_drift(engine, stack) -> Drift
    destroy_stack(engine, stack, *, confirm, on_plan, on_event, run) -> Plan
        `run` wraps each engine call (Runner); confirm() always runs in the caller's thread.
    run_interruptible(work, engine, on_interrupt) -> T
        Runs `work` in a thread; each Ctrl-C asks the engine to stop (the first gracefully, the next
        at once) and, once it has, raises Interrupted with how to continue.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from virtstack.ops.classify import Plan, classify, pre_event_steps
from virtstack.ops.drift import Drift, detect_drift
from virtstack.ops.engine import EngineApi, OnEvent
from virtstack.ops.errors import Cancelled, DataLossRefused, Interrupted

__all__ = [
    "Applied",
    "Runner",
    "apply_stack",
    "check_drift",
    "destroy_stack",
    "make_plan",
    "run_interruptible",
]

T = TypeVar("T")
# Runs one engine call: `changing` says whether it changes the stack (an interruption then needs
# more words).  The CLI passes one built on run_interruptible; the default just calls it.
Runner = Callable[[Callable[[], Any], bool], Any]


def _direct(work: Callable[[], Any], _changing: bool) -> Any:
    return work()


@dataclass(frozen=True)
class Applied:
    plan: Plan
    applied: bool
    outputs: dict[str, Any] = field(default_factory=dict)


def make_plan(engine: EngineApi, stack: str, plan_file: Path | None = None) -> Plan:
    return classify(pre_event_steps(engine.preview(stack, refresh=True, plan_file=plan_file)))


def apply_stack(
    engine: EngineApi,
    stack: str,
    *,
    allow_data_loss: bool,
    confirm: Callable[[Plan], bool],
    on_plan: Callable[[Plan], None] | None = None,
    on_event: OnEvent | None = None,
    run: Runner = _direct,
) -> Applied:
    with tempfile.TemporaryDirectory(prefix="virtstack-plan-") as tmp:
        plan_file = Path(tmp) / "plan.json"
        plan: Plan = run(lambda: make_plan(engine, stack, plan_file), False)
        if on_plan is not None:
            on_plan(plan)
        if plan.refused_data_loss and not allow_data_loss:
            raise DataLossRefused(list(plan.refused_data_loss))
        if not plan.has_changes:
            return Applied(plan, applied=False)
        if not confirm(plan):
            raise Cancelled("Cancelled: nothing was changed.")
        saved = plan_file if plan_file.exists() else None
        outputs = run(lambda: engine.up(stack, plan_file=saved, on_event=on_event), True)
        return Applied(plan, applied=True, outputs=outputs)


def check_drift(engine: EngineApi, stack: str) -> Drift:
    return detect_drift(engine.preview_refresh(stack))


def destroy_stack(
    engine: EngineApi,
    stack: str,
    *,
    confirm: Callable[[Plan], bool],
    allow_data_loss: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
    on_event: OnEvent | None = None,
    run: Runner = _direct,
) -> Plan:
    plan: Plan = run(lambda: classify(pre_event_steps(engine.preview_destroy(stack))), False)
    if on_plan is not None:
        on_plan(plan)
    if plan.refused_data_loss and not allow_data_loss:
        raise DataLossRefused(list(plan.refused_data_loss))
    if not plan.has_changes:
        return plan
    if not confirm(plan):
        raise Cancelled("Cancelled: nothing was destroyed.")
    run(lambda: engine.destroy(stack, on_event=on_event), True)
    return plan


def run_interruptible(
    work: Callable[[], T],
    engine: EngineApi,
    on_interrupt: Callable[[int], None],
    interrupted_message: str,
) -> T:
    """Run `work` (which drives `engine`) so that Ctrl-C cancels the engine instead of abandoning it.

    The first Ctrl-C sends the engine one SIGINT (it finishes the operations in flight, saves the
    state and releases the stack's lock); a second one kills it.  Either way this waits for the
    engine to exit, then raises Interrupted(interrupted_message).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target, name="virtstack-engine", daemon=True)
    interrupts = 0
    while thread.ident is None or thread.is_alive():
        try:
            if thread.ident is None:
                thread.start()
            thread.join(0.2)
        except KeyboardInterrupt:
            interrupts += 1
            engine.interrupt(force=interrupts > 1)
            on_interrupt(interrupts)
    if interrupts:
        raise Interrupted(interrupted_message)
    if "error" in box:
        raise box["error"]
    return box["result"]
