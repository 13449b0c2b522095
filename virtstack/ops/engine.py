"""The Pulumi engine, driven through the Automation API (pulumi.automation).

Public API:
    Engine(project, environ=None)          -- implements EngineApi on a LocalWorkspace whose work_dir is
                                              the project root, with engine_env() added to the
                                              environment (backend, PULUMI_HOME, passphrase default).
    EngineApi                              -- the Protocol the CLI and the flows in virtstack.ops.apply
                                              use, so tests can substitute a fake engine.
    InterruptiblePulumiCommand             -- PulumiCommand whose child runs in its own session, so
                                              Ctrl-C reaches virtstack only and virtstack asks the
                                              engine to stop exactly once (a graceful cancel).
    OnEvent = Callable[[EngineEvent], None]

On a PostgreSQL backend every run that changes a stack (`up` and `destroy`, from their preview on)
holds the stack's lease (virtstack.shared_state): a second one fails at once, naming the first.

Every operation returns the EngineEvents it saw (and passes each to `on_event` as it arrives).  A
failed operation raises EngineError naming each failing resource with its last error line, after
writing the engine's full output to a log file under the project's log directory.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from pulumi import automation as auto
from pulumi.automation import events
from pulumi.automation._stack import StackInitMode
from pulumi.automation.errors import (
    CommandError,
    ConcurrentUpdateError,
    StackAlreadyExistsError,
    StackNotFoundError,
)

from virtstack.errors import VirtstackError
from virtstack.locks import StackLock, clear_stale_locks, stack_locks
from virtstack.ops.command import EngineInterrupted, InterruptiblePulumiCommand
from virtstack.ops.errors import EngineError, StackNotFound
from virtstack.ops.logs import write_log
from virtstack.ops.project import Project, ensure_state_dir
from virtstack.ops.resources import describe, is_virtstack_resource, urn_name
from virtstack.settings import PREVIOUS_PLACEMENT_ENV, Settings
from virtstack.shared_state import Lease, StackBusy, held_locks, is_postgres

__all__ = [
    "Engine",
    "EngineApi",
    "EngineInterrupted",
    "InterruptiblePulumiCommand",
    "OnEvent",
    "engine_error_message",
]

OnEvent = Callable[[events.EngineEvent], None]

_STACK_TYPE = "pulumi:pulumi:Stack"
# `pulumi stack output NAME` of a stack that exists but has no such output (never deployed) says:
_NO_OUTPUT = "does not have output property"
# In PULUMI_HOME: the version of each `pulumi` binary used (virtstack.ops.cliversion).
CLI_VERSION_CACHE = "virtstack-cli-versions.json"


class _Stack(auto.Stack):
    """auto.Stack with an apply that returns as soon as the engine has finished.

    After `pulumi up`, Stack.up() runs `stack output` twice (once with --show-secrets, which decrypts
    every secret) and `stack history --show-secrets` to fill its UpResult: about a second per apply,
    measured, for figures virtstack takes from the event stream instead (the root resource's outputs
    event, with secrets masked, which is how the CLI shows them anyway)."""

    def __init__(
        self, name: str, workspace: auto.Workspace, mode: StackInitMode, *, select: bool = True
    ) -> None:
        if select:
            super().__init__(name, workspace, mode)  # `pulumi stack select` (mode: create it if missing)
            return
        # Every operation names its stack (--stack): selecting it first only makes it the workspace's
        # current stack, for one more process (~0.1 s).  The caller knows the stack exists.
        self.name, self.workspace, self._mode = name, workspace, mode

    def apply(self, **kwargs: Any) -> None:
        # Instance attributes shadow the two follow-up methods for this one call.
        self.outputs = lambda: {}  # type: ignore[method-assign]
        self.info = lambda show_secrets=True: _NOT_READ  # type: ignore[method-assign]
        try:
            super().up(**kwargs)
        finally:
            del self.outputs, self.info


_NOT_READ = auto.UpdateSummary(
    kind="update",
    start_time=datetime.datetime.now(),
    message="",
    environment={},
    config={},
    result="not read",
)


def stack_outputs_of(seen: list[events.EngineEvent]) -> dict[str, Any]:
    """The stack's outputs as the engine reported them in its last outputs event for the stack."""
    for event in reversed(seen):
        outputs_event = event.res_outputs_event
        if outputs_event is not None and outputs_event.metadata.type == _STACK_TYPE:
            new = outputs_event.metadata.new
            return dict(new.outputs or {}) if new is not None else {}
    return {}


# Diagnostics that only repeat that something failed; the resource's own diagnostic says what.
_NOISE = (
    "an unhandled error occurred: program exited with non-zero exit code",
    "resource monitor has terminated",
    "update failed",
    "preview failed",
    "destroy failed",
    "refresh failed",
    "one or more errors occurred",
    # With an update plan, every planned step an earlier failure prevented is reported again:
    "expected resource operations for",
)


class EngineApi(Protocol):
    """What virtstack needs from the engine (see Engine)."""

    def preview(
        self,
        stack: str,
        *,
        refresh: bool = True,
        plan_file: Path | None = None,
        on_event: OnEvent | None = None,
    ) -> list[events.EngineEvent]: ...

    def up(
        self,
        stack: str,
        *,
        plan_file: Path | None = None,
        refresh: bool = True,
        on_event: OnEvent | None = None,
    ) -> dict[str, Any]: ...

    def preview_refresh(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]: ...

    def preview_destroy(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]: ...

    def destroy(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]: ...

    def outputs(self, stack: str) -> dict[str, Any]: ...

    def previous_placement(self, stack: str) -> dict[str, str]: ...

    def interrupt(self, force: bool = False) -> bool: ...


def _quiet(collect: OnEvent, keep: Callable[[str], None]) -> dict[str, Any]:
    """Automation API arguments shared by every operation: events to `collect`, the engine's text
    output to `keep` (for the log of a failed run), none of the CLI's own progress display."""
    return {
        "on_event": collect,
        "on_output": keep,
        "on_error": keep,
        "color": "never",
        "suppress_progress": True,
    }


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def engine_error_message(operation: str, stack: str, stream: list[events.EngineEvent], stderr: str) -> str:
    """One line per failing resource ('<owner>: <object>: <last error line>'), else the program's or
    the engine's own error lines."""
    per_resource: dict[str, str] = {}
    general: list[str] = []
    steps = {}
    for event in stream:
        for holder in (event.resource_pre_event, event.res_outputs_event, event.res_op_failed_event):
            if holder is not None:
                steps[holder.metadata.urn] = holder.metadata
    for event in stream:
        diag = event.diagnostic_event
        if diag is None or diag.severity != "error":
            continue
        message = diag.message.strip()
        if not message or any(noise in message.lower() for noise in _NOISE):
            continue
        urn = diag.urn or ""
        if urn and urn in steps and is_virtstack_resource(steps[urn]):
            info = describe(steps[urn])
            line = _last_line(message)
            if "violates plan" in message:
                line = (
                    "the engine refused a change that was not in the previewed plan (the stack file or "
                    "the real world changed since the preview); run `virtstack up` again to review it"
                )
            per_resource[urn] = f"{info.owner}: {info.label}: {line}"
        elif urn and "violates plan" in message:
            per_resource[urn] = f"{urn_name(urn)}: {_last_line(message)}"
        else:
            for line in message.splitlines():
                if line.strip() and line.strip() not in general:
                    general.append(line.rstrip())
    lines = list(per_resource.values()) + general
    if not lines:
        tail = [line for line in stderr.strip().splitlines() if line.strip()]
        lines = tail[-3:] if tail else ["the engine failed without a message"]
    return f"{operation} of stack {stack} failed:\n" + "\n".join(f"  {line}" for line in lines)


class Engine:
    """EngineApi on the real Pulumi engine."""

    def __init__(self, project: Project, environ: Mapping[str, str] | None = None) -> None:
        self.project = project
        self.environ = dict(os.environ if environ is None else environ)
        self.settings = Settings.from_env(self.environ, root=project.root)
        self.env = self.settings.engine_env(self.environ)
        self._command: InterruptiblePulumiCommand | None = None
        self._workspace: auto.LocalWorkspace | None = None
        self._stacks: dict[str, _Stack] = {}
        self._command_lock = threading.Lock()  # the engine thread and a Ctrl-C may both ask for it
        self._lease: Lease | None = None  # a shared backend's lease on the stack being changed
        # stack -> whether it exists, as the placement read found out (absent: not known)
        self._exists: dict[str, bool] = {}

    # ----------------------------------------------------------------- plumbing

    def _command_or_fail(self) -> InterruptiblePulumiCommand:
        with self._command_lock:
            return self._make_command()

    def _make_command(self) -> InterruptiblePulumiCommand:
        if self._command is None:
            found = shutil.which("pulumi", path=self.env.get("PATH", self.environ.get("PATH", "")))
            if found is None:
                raise VirtstackError("the Pulumi CLI is not installed (run `make setup`)")
            # An absolute command: PulumiCommand puts its directory (with the language host) first on PATH.
            root = str(Path(found).parent.parent) if Path(found).parent.name == "bin" else None
            # The CLI's version, remembered per binary (one `pulumi version` less per command);
            # the bench's baseline (VIRTSTACK_BASELINE_FIXED_COST) asks it every time again.
            cache = (
                None if self.settings.baseline_fixed_cost else self.settings.pulumi_home / CLI_VERSION_CACHE
            )
            try:
                self._command = InterruptiblePulumiCommand(root=root, version_cache=cache)
            except (OSError, subprocess.CalledProcessError) as err:
                raise VirtstackError(f"cannot run the Pulumi CLI {found}: {err}") from None
        return self._command

    def workspace(self) -> auto.LocalWorkspace:
        if self._workspace is None:
            ensure_state_dir(self.project, self._backend_url() or "")
            self._workspace = auto.LocalWorkspace(
                work_dir=str(self.project.root),
                env_vars=self.env,
                pulumi_command=self._command_or_fail(),
            )
        return self._workspace

    def _stack(self, name: str, create: bool) -> _Stack:
        # One handle per stack and Engine: opening one runs `pulumi stack select`, and `up` opens the
        # stack its preview has just opened.
        handle = self._stacks.get(name)
        if handle is not None:
            return handle
        mode = StackInitMode.CREATE_OR_SELECT if create else StackInitMode.SELECT
        exists = self._exists.get(name)
        try:
            if self.settings.baseline_fixed_cost or exists is None or (not exists and not create):
                # Not known (or the bench's baseline): `pulumi stack select` finds out, as before.
                handle = _Stack(name, self.workspace(), mode)
            else:
                if not exists:  # the placement read found no such stack: create it (`stack init`)
                    with contextlib.suppress(StackAlreadyExistsError):  # another run just did
                        self.workspace().create_stack(name)
                    self._exists[name] = True
                handle = _Stack(name, self.workspace(), mode, select=False)
            self._stacks[name] = handle
            return handle
        except StackNotFoundError:
            raise StackNotFound(name) from None
        except CommandError as err:
            raise EngineError(f"cannot open stack {name}: {_last_line(str(err))}") from None

    def _run(
        self,
        operation: str,
        stack: str,
        method: str,
        on_event: OnEvent | None,
        *,
        create: bool = False,
        **kwargs: Any,
    ) -> list[events.EngineEvent]:
        """Run the stack handle's `method` (an Automation API operation, or _Stack.apply) with the
        engine's events collected; returns them.  `create`: open the stack, creating it if needed."""
        # On a shared backend, a run that changes the stack takes its lease first, from the preview
        # of `up`/`destroy` on (virtstack.shared_state): two at once, the second fails here.
        changing = {"up": "up", "destroy preview": "destroy", "destroy": "destroy"}.get(operation)
        if operation == "preview" and kwargs.get("plan"):
            changing = "up"
        if changing is not None:
            self._take_lease(stack, changing)
        try:
            return self._run_locked(operation, stack, method, on_event, create=create, **kwargs)
        finally:
            if operation in ("up", "destroy"):
                self._release_lease()

    def _run_locked(
        self,
        operation: str,
        stack: str,
        method: str,
        on_event: OnEvent | None,
        *,
        create: bool = False,
        **kwargs: Any,
    ) -> list[events.EngineEvent]:
        # Locks first: opening the stack reads its checkpoint, which a live update may be rewriting
        # at that moment ("failed to load checkpoint: EOF" instead of naming the holder).
        held = self._clear_stale_locks(stack)
        if held:
            # Fail fast: previewing against a stack another update is changing gives a plan that is
            # stale before it is shown, and applying it would fail on the lock anyway.
            raise self._locked(stack, held)
        if method in ("preview", "apply", "up"):
            # First: its answer also says whether the stack exists (no `stack select` needed then).
            self._pass_previous_placement(stack)
        handle = self._stack(stack, create=create)
        seen: list[events.EngineEvent] = []
        output: list[str] = []
        lock = threading.Lock()

        def collect(event: events.EngineEvent) -> None:
            with lock:
                seen.append(event)
            if on_event is not None:
                on_event(event)

        def keep(line: str) -> None:
            with lock:
                output.append(line)

        try:
            getattr(handle, method)(**kwargs, **_quiet(collect, keep))
        except ConcurrentUpdateError:
            raise self._locked(stack, self._held(stack)) from None
        except StackNotFoundError:
            raise StackNotFound(stack) from None
        except CommandError as err:
            message = engine_error_message(operation, stack, seen, str(err))
            log = self._log(operation, stack, output, str(err))
            raise EngineError(message, str(log)) from None
        return seen

    def _pass_previous_placement(self, stack: str) -> None:
        """Give the program the placement the last deployment recorded (the stack's `placement`
        output) in PREVIOUS_PLACEMENT_ENV, read once per Engine: the program would otherwise run
        `pulumi stack output` itself on every preview and every update (virtstack.edge)."""
        workspace = self.workspace()
        env = dict(workspace.env_vars)
        if PREVIOUS_PLACEMENT_ENV in env:
            return
        args = ["stack", "output", "placement", "--json", "--stack", stack]
        try:
            out = self._command_or_fail().run(args, str(self.project.root), env).stdout
            placement = json.loads(out or "{}")
            self._exists.setdefault(stack, True)
        except StackNotFoundError:  # never created
            placement = {}
            self._exists.setdefault(stack, False)
        except CommandError as err:  # no such output yet (never deployed), or a failure: not known
            placement = {}
            if _NO_OUTPUT in str(err):
                self._exists.setdefault(stack, True)
        except ValueError:
            placement = {}
        env[PREVIOUS_PLACEMENT_ENV] = json.dumps(placement if isinstance(placement, dict) else {})
        workspace.env_vars = env  # every later command of this workspace passes it on

    def previous_placement(self, stack: str) -> dict[str, str]:
        """VM -> host of the last deployment: what the program gets in PREVIOUS_PLACEMENT_ENV (read
        once per Engine, shared with the engine runs that follow)."""
        self._pass_previous_placement(stack)
        placement = json.loads(self.workspace().env_vars[PREVIOUS_PLACEMENT_ENV])
        return {str(vm): str(host) for vm, host in placement.items()}

    def _backend_url(self) -> str | None:
        return self.env.get("PULUMI_BACKEND_URL") or self.environ.get("PULUMI_BACKEND_URL")

    def _project_name(self) -> str:
        try:
            text = (self.project.root / "Pulumi.yaml").read_text(encoding="utf-8")
        except OSError:
            return "virtstack"
        found = re.search(r"^name:\s*(\S+)\s*$", text, re.M)
        return found.group(1) if found else "virtstack"

    def _take_lease(self, stack: str, operation: str) -> None:
        url = self._backend_url()
        if not is_postgres(url) or self._lease is not None:
            return
        try:
            self._lease = Lease.acquire(str(url), self._project_name(), stack, operation)
        except StackBusy as busy:
            raise self._locked(stack, [busy.holder]) from None
        atexit.register(self._release_lease)

    def _release_lease(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def _held(self, stack: str) -> list[StackLock]:
        url = self._backend_url()
        if is_postgres(url):
            return held_locks(str(url), self._project_name(), stack)
        return stack_locks(url, stack)

    def _clear_stale_locks(self, stack: str) -> list[StackLock]:
        """A run killed outright (kill -9, a crash) leaves its lock file behind and every later run
        would fail on it; a lock of a process of this machine that no longer exists protects nothing.
        On a shared backend nothing is ever removed (virtstack.locks).  Returns the locks that are
        still held."""
        url = self._backend_url()
        if is_postgres(url):
            return held_locks(str(url), self._project_name(), stack)
        removed, held = clear_stale_locks(url, stack)
        for lock in removed:
            print(
                f"virtstack: removed a stale lock of stack {stack} left by {lock.describe()} "
                "(no longer running)",
                file=sys.stderr,
            )
        return held

    @staticmethod
    def _locked(stack: str, holders: list[StackLock]) -> EngineError:
        who = ", ".join(lock.describe() for lock in holders)
        return EngineError(
            f"stack {stack} is locked by another update{f' ({who})' if who else ''}; wait for it to "
            f"finish, or if none is running any more, run `pulumi cancel --stack {stack} --yes`"
        )

    def _log(self, operation: str, stack: str, output: list[str], error: str) -> Path | None:
        text = "\n".join(output) + "\n\n--- error\n" + error + "\n"
        try:
            return write_log(self.project.log_dir, f"{operation}-{stack}", text)
        except OSError:
            return None

    # ---------------------------------------------------------------- operations

    def preview(
        self,
        stack: str,
        *,
        refresh: bool = True,
        plan_file: Path | None = None,
        on_event: OnEvent | None = None,
    ) -> list[events.EngineEvent]:
        plan = str(plan_file) if plan_file else None
        return self._run("preview", stack, "preview", on_event, create=True, refresh=refresh, plan=plan)

    def up(
        self,
        stack: str,
        *,
        plan_file: Path | None = None,
        refresh: bool = True,
        on_event: OnEvent | None = None,
    ) -> dict[str, Any]:
        plan = str(plan_file) if plan_file else None
        # "up": Stack.up() with its follow-up reads (the bench's baseline, VIRTSTACK_ENGINE_FULL_UP).
        method = "up" if self.settings.engine_full_up else "apply"
        seen = self._run("up", stack, method, on_event, create=True, refresh=refresh, plan=plan)
        return stack_outputs_of(seen)

    def preview_refresh(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]:
        return self._run("refresh preview", stack, "preview_refresh", on_event)

    # exclude_protected: a VM with `protect: true` (and what it uses) survives any destroy.
    def preview_destroy(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]:
        return self._run("destroy preview", stack, "preview_destroy", on_event, exclude_protected=True)

    def destroy(self, stack: str, *, on_event: OnEvent | None = None) -> list[events.EngineEvent]:
        return self._run("destroy", stack, "destroy", on_event, exclude_protected=True)

    def outputs(self, stack: str) -> dict[str, Any]:
        handle = self._stack(stack, create=False)
        try:
            return {key: value.value for key, value in handle.outputs().items()}
        except CommandError as err:
            raise EngineError(f"cannot read the outputs of stack {stack}: {_last_line(str(err))}") from None

    def interrupt(self, force: bool = False) -> bool:
        return self._command_or_fail().interrupt(force)
