"""After `up`: ask libvirt how each VM really is, instead of trusting what the apply recorded.

Public API:
    verify_vms(outputs, *, wait_ready=False, timeout=300, settle=3, started=None, open_uri=libvirt.open,
               clock=time.monotonic, sleep=time.sleep) -> list[VmProblem]
        Re-reads each VM of the stack's `vms` output from its host. A VM that should run but is
        paused, crashed or shut off is a problem (with libvirt's reason and its log paths); VMs are
        watched until `settle` seconds after their start, since a guest that QEMU cannot run pauses
        a moment after its start. `started` (domain name -> `clock` time, virtstack.ops.starts) says
        when this `up` started each domain at the latest; a VM not in it counts from now. With
        `wait_ready`, also waits until each running VM's guest agent answers.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import libvirt

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "in no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}
_PAUSED_REASONS = {
    libvirt.VIR_DOMAIN_PAUSED_UNKNOWN: "unknown reason: QEMU stopped the guest, e.g. an emulation failure",
    libvirt.VIR_DOMAIN_PAUSED_USER: "paused by a user",
    libvirt.VIR_DOMAIN_PAUSED_IOERROR: "a disk I/O error",
    libvirt.VIR_DOMAIN_PAUSED_WATCHDOG: "the watchdog fired",
    libvirt.VIR_DOMAIN_PAUSED_SHUTTING_DOWN: "it is shutting down",
    libvirt.VIR_DOMAIN_PAUSED_CRASHED: "the guest crashed (panic)",
    libvirt.VIR_DOMAIN_PAUSED_STARTING_UP: "it is still starting up",
}
_SHUTOFF_REASONS = {
    libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "the guest shut itself down",
    libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "it was stopped by force",
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "QEMU crashed",
    libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "it failed to start",
}
_RUNNING = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED)


@dataclass(frozen=True)
class VmProblem:
    vm: str
    host: str
    text: str

    def __str__(self) -> str:
        return f"vm {self.vm} on host {self.host}: {self.text}"


def _reason(state: int, reason: int) -> str:
    if state == libvirt.VIR_DOMAIN_PAUSED:
        return _PAUSED_REASONS.get(reason, f"reason code {reason}")
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return _SHUTOFF_REASONS.get(reason, f"reason code {reason}")
    return f"reason code {reason}"


def _logs(name: str, vm: Mapping[str, Any]) -> str:
    console = vm.get("console_log") or f"/var/log/libvirt/qemu/{name}-serial0.log"
    return f"console log {console}, QEMU log /var/log/libvirt/qemu/{name}.log"


def _agent_answers(dom: libvirt.virDomain) -> bool:
    import libvirt_qemu

    try:
        reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-ping"}), 2, 0)
    except libvirt.libvirtError:
        return False
    return "return" in json.loads(reply or "{}")


def verify_vms(
    outputs: Mapping[str, Any],
    *,
    wait_ready: bool = False,
    timeout: float = 300.0,
    settle: float = 3.0,
    started: Mapping[str, float] | None = None,
    open_uri: Callable[[str], libvirt.virConnect] = libvirt.open,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    agent_answers: Callable[[libvirt.virDomain], bool] = _agent_answers,
) -> list[VmProblem]:
    vms: Mapping[str, Any] = outputs.get("vms") or {}
    wanted = {
        name: vm for name, vm in vms.items() if isinstance(vm, Mapping) and vm.get("running_wanted", True)
    }
    if not wanted:
        return []
    connections: dict[str, libvirt.virConnect] = {}
    problems: dict[str, VmProblem] = {}
    ready: set[str] = set()
    start = clock()
    # When each VM's settle window began: its (re)start in this `up` (the engine reported it done
    # after libvirt started it), else now; never later than now.
    since = {
        name: min(start, (started or {}).get(str(vm.get("domain") or name), start))
        for name, vm in wanted.items()
    }
    try:
        while True:
            for name, vm in sorted(wanted.items()):
                if name in problems:
                    continue
                host = str(vm.get("host") or "?")
                uri = vm.get("uri")
                if not isinstance(uri, str) or not uri:
                    problems[name] = VmProblem(
                        name, host, "the stack's outputs do not say which host it is on"
                    )
                    continue
                try:
                    conn = connections.get(uri) or connections.setdefault(uri, open_uri(uri))
                    dom = conn.lookupByName(str(vm.get("domain") or name))
                    state, reason = dom.state()
                except libvirt.libvirtError as err:
                    problems[name] = VmProblem(name, host, f"cannot be read from libvirt: {err}")
                    continue
                if state not in _RUNNING:
                    shown = _STATES.get(state, "in an unknown state")
                    text = f"should be running but is {shown} ({_reason(state, reason)}); {_logs(name, vm)}"
                    problems[name] = VmProblem(name, host, text)
                elif wait_ready and name not in ready and agent_answers(dom):
                    ready.add(name)
            now = clock()
            elapsed = now - start
            pending = [n for n in wanted if n not in problems and n not in ready]
            settled = all(now - since[n] >= settle for n in wanted if n not in problems)
            if settled and (not wait_ready or not pending):
                break
            if wait_ready and elapsed >= timeout:
                for name in pending:
                    vm = wanted[name]
                    problems[name] = VmProblem(
                        name,
                        str(vm.get("host") or "?"),
                        f"its guest agent did not answer within {timeout:.0f} s; {_logs(name, vm)}",
                    )
                break
            sleep(0.5)
    finally:
        for conn in connections.values():
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()
    return [problems[name] for name in sorted(problems)]
