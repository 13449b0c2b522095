"""virtstack.settings: the one place the environment is assembled (engine, scripts/env.sh, the CLI),
the one Pulumi version pin, and the previous placement the CLI passes to the program."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from virtstack.cli.main import cli
from virtstack.edge import previous_placement
from virtstack.ops.engine import Engine
from virtstack.ops.project import Project
from virtstack.settings import (
    LOCAL_DEV_PASSPHRASE,
    PREVIOUS_PLACEMENT_ENV,
    Settings,
    SettingsError,
    pulumi_version,
)

ROOT = Path(__file__).resolve().parents[2]


def sourced(**given: str) -> dict[str, str]:
    """The environment after `. scripts/env.sh` in a shell that starts with only `given`."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin", **given}
    out = subprocess.run(
        ["bash", "-c", f". {ROOT}/scripts/env.sh && env -0"], env=env, capture_output=True, check=True
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


@pytest.mark.parametrize(
    ("given", "passphrase"),
    [
        ({}, LOCAL_DEV_PASSPHRASE),
        ({"CI": "true"}, None),
        ({"CI": "false"}, LOCAL_DEV_PASSPHRASE),
        ({"CI": "true", "VIRTSTACK_ALLOW_DEV_PASSPHRASE": "1"}, LOCAL_DEV_PASSPHRASE),
        ({"PULUMI_BACKEND_URL": "s3://bucket/state"}, None),
        ({"PULUMI_CONFIG_PASSPHRASE": ""}, ""),  # refused by virtstack when it runs; never replaced
        ({"PULUMI_CONFIG_PASSPHRASE": "own"}, "own"),
    ],
)
def test_env_sh_keeps_the_development_passphrase_rules(given: dict[str, str], passphrase: str | None) -> None:
    assert sourced(**given).get("PULUMI_CONFIG_PASSPHRASE") == passphrase


def test_env_sh_and_the_engine_get_the_same_values_from_one_place(tmp_path: Path) -> None:
    shell = sourced(PULUMI_PARALLEL="5")
    engine = Settings.from_env({"PATH": "/usr/bin"}, root=ROOT).engine_env({"PATH": "/usr/bin"})
    for key in ("PULUMI_HOME", "PULUMI_BACKEND_URL", "GRPC_ENABLE_FORK_SUPPORT", "PULUMI_SKIP_UPDATE_CHECK"):
        assert shell[key] == engine[key], key
    assert shell["PULUMI_PARALLEL"] == "5"  # a value the caller set wins
    assert engine["PULUMI_PARALLEL"] == str(Settings.from_env({}).provider_threads)
    assert shell["PATH"].split(":")[-1] == f"{shell['VIRTSTACK_TOOLCHAIN']}/bin"
    assert shell["VIRTSTACK_TOOLCHAIN"].endswith(f"pulumi-{pulumi_version()}")


def test_virtstack_env_shell_prints_what_env_sh_evaluates(tmp_path: Path) -> None:
    environ = {"PATH": "/usr/bin", "VIRTSTACK_ROOT": str(ROOT), "PULUMI_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(cli, ["env", "--shell"], env=environ)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"export PULUMI_HOME={tmp_path / 'home'}" in lines
    assert all(line.startswith("export ") for line in lines)


@pytest.mark.parametrize(
    ("name", "value"),
    [("PULUMI_PARALLEL", "many"), ("VIRTSTACK_PROVIDER_THREADS", "0"), ("VIRTSTACK_CONNECT_TIMEOUT", "-1")],
)
def test_a_setting_that_cannot_be_used_is_one_line_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{name}={re.escape(value)} "):
        Settings.from_env({name: value})


def test_knobs_the_bench_baseline_turns(tmp_path: Path) -> None:
    turned = Settings.from_env(
        {
            "VIRTSTACK_PROVIDER_THREADS": "4",
            "VIRTSTACK_CONNECTIONS_PER_HOST": "1",
            "VIRTSTACK_ENGINE_FULL_UP": "1",
            "VIRTSTACK_BASELINE_FIXED_COST": "1",
        }
    )
    assert (turned.provider_threads, turned.connections_per_host, turned.parallel) == (4, 1, 4)
    assert turned.engine_full_up and not Settings.from_env({}).engine_full_up
    assert turned.baseline_fixed_cost and not Settings.from_env({}).baseline_fixed_cost


def test_one_pulumi_version_the_sdk_pin_and_the_language_host_follow() -> None:
    version = pulumi_version()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"pulumi==([^"]+)"', pyproject).group(1) == version  # type: ignore[union-attr]
    host = (ROOT / "tools/pulumi-language-python/go.mod").read_text()
    assert f"github.com/pulumi/pulumi/sdk/v3 v{version}" in host
    # The language host reports its version to the engine.
    assert f'const version = "{version}"' in (ROOT / "tools/pulumi-language-python/main.go").read_text()


def test_a_missing_version_pin_is_named(tmp_path: Path) -> None:
    (tmp_path / "tools" / "pulumi").mkdir(parents=True)
    (tmp_path / "tools" / "pulumi" / "go.mod").write_text("module x\n")
    with pytest.raises(SettingsError, match=r"go\.mod: no `require"):
        pulumi_version(tmp_path)


# ------------------------------------------------------------------- the previous placement


def test_the_program_takes_the_placement_the_cli_passed() -> None:
    # PATH without `pulumi`: asking the engine itself would give {}.
    environ = {"PATH": "/nonexistent", PREVIOUS_PLACEMENT_ENV: json.dumps({"web-1": "node-2"})}
    assert previous_placement("dev", environ=environ) == {"web-1": "node-2"}
    assert previous_placement("dev", environ={"PATH": "/nonexistent"}) == {}


def fake_pulumi(tmp_path: Path, output: str, code: int = 0) -> tuple[Path, Path]:
    """A `pulumi` that logs its arguments and answers `stack output` with `output`."""
    bin_dir = tmp_path / "toolchain" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "calls"
    script = bin_dir / "pulumi"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo v3.274.1; exit 0; fi\n'
        f'echo "$*" >> "{calls}"\n'
        f"printf '%s' '{output}'\nexit {code}\n"
    )
    script.chmod(0o755)
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\n")
    (tmp_path / "__main__.py").write_text("")
    return bin_dir, calls


@pytest.mark.parametrize(
    ("output", "code", "passed"),
    [('{"web-1": "node-2"}', 0, {"web-1": "node-2"}), ("error: no stack output", 255, {})],
)
def test_the_engine_reads_the_placement_once_and_passes_it(
    tmp_path: Path, output: str, code: int, passed: dict[str, str]
) -> None:
    bin_dir, calls = fake_pulumi(tmp_path, output, code)
    environ = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PULUMI_BACKEND_URL": f"file://{tmp_path}/state"}
    engine = Engine(Project(tmp_path), environ)
    engine._pass_previous_placement("dev")
    engine._pass_previous_placement("dev")  # preview, then up: one read
    assert json.loads(engine.workspace().env_vars[PREVIOUS_PLACEMENT_ENV]) == passed
    asked = [line for line in calls.read_text().splitlines() if "stack output" in line]
    assert asked == ["--non-interactive stack output placement --json --stack dev"]


def test_the_provider_process_takes_its_sizes_from_the_settings() -> None:
    # A fresh interpreter, as the engine starts the provider: the values are read at import.
    code = (
        "import virtstack.provider as p, virtstack.provider.connection as c; "
        "print(p.PROVIDER_THREADS, c.CONNECTIONS_PER_HOST, c.OPEN_TIMEOUT)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VIRTSTACK_PROVIDER_THREADS": "5",
        "VIRTSTACK_CONNECTIONS_PER_HOST": "2",
        "VIRTSTACK_CONNECT_TIMEOUT": "7.5",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["5", "2", "7.5"]
