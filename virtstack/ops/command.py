"""The `pulumi` child process of every engine command: its own session, so Ctrl-C reaches virtstack
only and virtstack asks the engine to stop exactly once (a graceful cancel).

Public API:
    InterruptiblePulumiCommand(root=None, version_cache=None)  -- a PulumiCommand for the Automation API;
                                              with version_cache (a file), the CLI's version comes
                                              from there (virtstack.ops.cliversion) instead of one
                                              more `pulumi version` process per virtstack command
        .interrupt(force=False) -> bool    -- SIGINT (force: SIGKILL) to every running child
    EngineInterrupted                      -- raised for a command asked to start after an interrupt
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pulumi.automation._cmd import (
    _MINIMUM_VERSION,
    _SKIP_VERSION_CHECK_VAR,
    CommandResult,
    PulumiCommand,
    _parse_and_validate_pulumi_version,
)
from pulumi.automation.errors import create_command_error

from virtstack.locks import holder_record

__all__ = ["EngineInterrupted", "InterruptiblePulumiCommand"]


class EngineInterrupted(RuntimeError):
    """An engine command was not started because the user interrupted virtstack."""


class InterruptiblePulumiCommand(PulumiCommand):
    """PulumiCommand.run, except that the child gets its own session and can be interrupted.

    A terminal's Ctrl-C goes to its foreground process group; were the `pulumi` child in it, it would
    get the signal too, and a second Ctrl-C (or virtstack's own) would make it terminate at once
    instead of cancelling gracefully.  Here only virtstack gets it and forwards one SIGINT per
    Ctrl-C: the first lets the engine finish the operations in flight, save the state and unlock the
    stack; the second terminates it.
    """

    def __init__(self, root: str | None = None, version_cache: Path | None = None) -> None:
        if version_cache is None:
            super().__init__(root=root)  # runs `pulumi version`
        else:
            # PulumiCommand.__init__'s own steps, with the version remembered per binary.
            from virtstack.ops.cliversion import cli_version

            self.command = os.path.join(root, "bin", "pulumi") if root else "pulumi"
            self.version = _parse_and_validate_pulumi_version(
                min_version=_MINIMUM_VERSION,
                current_version=cli_version(self.command, version_cache),
                opt_out=os.getenv(_SKIP_VERSION_CHECK_VAR) is not None,
            )
        self._processes: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self._interrupted = False

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: Callable[[str], Any] | None = None,
        on_error: Callable[[str], Any] | None = None,
    ) -> CommandResult:
        sep = args.index("--") if "--" in args else len(args)
        if "--non-interactive" not in args[:sep]:
            args.insert(0, "--non-interactive")
        env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
        if os.path.isabs(self.command):
            env["PATH"] = os.pathsep.join([os.path.dirname(self.command), env.get("PATH", "")])
        stdout_chunks: list[str] = []
        stderr_chunks: list[str] = []
        if self._interrupted:  # Ctrl-C came between two engine commands: start no more
            raise EngineInterrupted("interrupted before the engine started")

        def consume(stream: Any, callback: Callable[[str], Any] | None, chunks: list[str]) -> None:
            for line in iter(stream.readline, ""):
                stripped = line.rstrip()
                if callback:
                    callback(stripped)
                chunks.append(stripped)
            stream.close()

        # The child waits at a gate (a shell reading a line from its stdin, then exec-ing pulumi under
        # the same pid, stdin /dev/null as --non-interactive wants) until its holder record is written:
        # the record must exist before the process can take a stack lock, so that a later run can tell
        # whether the lock's holder is dead (virtstack.locks).
        with (
            subprocess.Popen(
                ["/bin/sh", "-c", 'read -r _; exec "$0" "$@" </dev/null', self.command, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                encoding="utf-8",
                start_new_session=True,
            ) as process,
            holder_record(env.get("PULUMI_BACKEND_URL"), process.pid),
        ):
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it was killed at the gate: nothing to open
                process.stdin.write("\n")
                process.stdin.close()
            with self._lock:
                self._processes.add(process)
                if self._interrupted:  # Ctrl-C came while it was starting
                    os.kill(process.pid, signal.SIGINT)
            try:
                readers = [
                    threading.Thread(target=consume, args=(process.stdout, on_output, stdout_chunks)),
                    threading.Thread(target=consume, args=(process.stderr, on_error, stderr_chunks)),
                ]
                for reader in readers:
                    reader.start()
                for reader in readers:
                    reader.join()
                process.wait()
            finally:
                with self._lock:
                    self._processes.discard(process)
        result = CommandResult(
            stdout="\n".join(stdout_chunks), stderr="\n".join(stderr_chunks), code=process.returncode
        )
        if result.code != 0:
            raise create_command_error(result)
        return result

    def interrupt(self, force: bool = False) -> bool:
        """SIGINT to every running child (a graceful cancel); `force`: SIGKILL.  True if any ran."""
        with self._lock:
            self._interrupted = True
            running = [p for p in self._processes if p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL if force else signal.SIGINT)
        return bool(running)
