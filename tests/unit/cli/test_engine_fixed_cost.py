"""The engine's fixed cost per virtstack command (issue 15): no `pulumi version` once the binary's
version is known, no `pulumi stack select` when the placement read already said whether the stack
exists; the bench baseline (VIRTSTACK_BASELINE_FIXED_COST=1) runs both again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clifakes import make_project

from virtstack.ops.cliversion import cli_version
from virtstack.ops.engine import CLI_VERSION_CACHE, Engine

# A stand-in `pulumi`: logs each command line, answers as the real CLI does for the three states of
# a stack (FAKE_STACK: missing | empty | deployed).
FAKE_PULUMI = r"""#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$*" in
  version) echo v3.274.1 ;;
  *"stack output placement"*)
    case "$FAKE_STACK" in
      missing) echo "error: no stack named 's1' found" >&2; exit 255 ;;
      empty) echo "error: current stack does not have output property 'placement'" >&2; exit 1 ;;
      *) echo '{"vm-1": "h1"}' ;;
    esac ;;
  *"stack select"*)
    if [ "$FAKE_STACK" = missing ]; then echo "error: no stack named 's1' found" >&2; exit 255; fi ;;
esac
exit 0
"""


def _engine(tmp_path: Path, state: str, **extra: str) -> tuple[Engine, Path]:
    bin_dir = tmp_path / "fake" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    pulumi = bin_dir / "pulumi"
    if not pulumi.exists():  # written once: a rewritten binary is a new binary (its version is asked)
        pulumi.write_text(FAKE_PULUMI)
        pulumi.chmod(0o755)
    log = tmp_path / "calls.log"
    environ = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "VIRTSTACK_TOOLCHAIN": str(tmp_path / "no-toolchain"),
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "FAKE_LOG": str(log),
        "FAKE_STACK": state,
        **extra,
    }
    return Engine(make_project(tmp_path / "p"), environ), log


def _calls(log: Path) -> list[str]:
    words = []
    for line in log.read_text().splitlines():
        args = [a for a in line.split() if not a.startswith("--")]
        words.append(" ".join(args[:2]))
    return words


@pytest.fixture(autouse=True)
def _fake_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # PulumiCommand runs children with os.environ + the workspace's variables.
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        # never created: `stack init` (what `stack select --create` would end in), no select
        ("missing", ["version", "stack output", "stack init"]),
        # created, never deployed / deployed: nothing more before the engine run itself
        ("empty", ["version", "stack output"]),
        ("deployed", ["version", "stack output"]),
    ],
)
def test_opening_a_stack_for_preview_costs_no_stack_select(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str, expected: list[str]
) -> None:
    monkeypatch.setenv("FAKE_STACK", state)
    engine, log = _engine(tmp_path, state)
    placement = engine.previous_placement("s1")
    engine._stack("s1", create=True)
    assert _calls(log) == expected
    assert placement == ({"vm-1": "h1"} if state == "deployed" else {})


def test_the_version_is_asked_once_per_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STACK", "deployed")
    engine, log = _engine(tmp_path, "deployed")
    engine.previous_placement("s1")
    again, _ = _engine(tmp_path, "deployed")  # the next virtstack command
    again.previous_placement("s1")
    assert _calls(log) == ["version", "stack output", "stack output"]
    assert (tmp_path / "home" / CLI_VERSION_CACHE).exists()


def test_the_bench_baseline_runs_version_and_select_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STACK", "deployed")
    for _ in range(2):
        engine, log = _engine(tmp_path, "deployed", VIRTSTACK_BASELINE_FIXED_COST="1")
        engine.previous_placement("s1")
        engine._stack("s1", create=True)
    assert _calls(log) == ["version", "stack output", "stack select"] * 2


def test_an_unknown_stack_state_still_selects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opened without a placement read (destroy, refresh preview): `stack select` finds out."""
    monkeypatch.setenv("FAKE_STACK", "deployed")
    engine, log = _engine(tmp_path, "deployed")
    engine._stack("s1", create=False)
    assert _calls(log) == ["version", "stack select"]


# ------------------------------------------------------------------------------ cli_version


def _binary(tmp_path: Path, name: str = "pulumi") -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n")
    return path


def test_cli_version_asks_once_then_remembers(tmp_path: Path) -> None:
    binary, cache = _binary(tmp_path), tmp_path / "cache.json"
    asked: list[str] = []

    def ask(command: str) -> str:
        asked.append(command)
        return "v3.274.1\n"

    assert cli_version(str(binary), cache, ask) == "3.274.1"
    assert cli_version(str(binary), cache, ask) == "3.274.1"
    assert asked == [str(binary)]


def test_a_changed_binary_is_asked_again(tmp_path: Path) -> None:
    binary, cache = _binary(tmp_path), tmp_path / "cache.json"
    answers = iter(["v3.274.1", "v3.280.0"])
    assert cli_version(str(binary), cache, lambda _: next(answers)) == "3.274.1"
    binary.write_text("#!/bin/sh\n# rebuilt\n")
    os.utime(binary, ns=(1, 1))
    assert cli_version(str(binary), cache, lambda _: next(answers)) == "3.280.0"


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"x": 1'])
def test_a_broken_cache_file_only_means_asking(tmp_path: Path, content: str) -> None:
    binary, cache = _binary(tmp_path), tmp_path / "cache.json"
    cache.write_text(content)
    assert cli_version(str(binary), cache, lambda _: "v3.1.0") == "3.1.0"
    assert cli_version(str(binary), cache, lambda _: "v9.9.9") == "3.1.0"  # now remembered


def test_an_unwritable_cache_still_answers(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    binary = _binary(tmp_path)
    assert cli_version(str(binary), blocker / "sub" / "cache.json", lambda _: "v3.2.0") == "3.2.0"


def test_a_binary_that_cannot_be_found_is_always_asked(tmp_path: Path) -> None:
    cache, asked = tmp_path / "cache.json", []
    for _ in range(2):
        cli_version("no-such-pulumi-binary", cache, lambda c: asked.append(c) or "v3.0.0")
    assert len(asked) == 2 and not cache.exists()
