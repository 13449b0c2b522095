"""Secrets (issue 11, "Secrets"): the passphrase policy, private state and logs, passwords kept out of
stack files, and cloud-init instance ids that reveal nothing about the user data."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from virtstack.cloudinit import instance_id, instance_id_key, render_user_data
from virtstack.edge import resolve_passwords
from virtstack.errors import SpecError, VirtstackError
from virtstack.fleet import VmInstance, expand_group
from virtstack.ops.logs import write_log
from virtstack.ops.project import LOCAL_DEV_PASSPHRASE, Project, engine_env, ensure_state_dir
from virtstack.spec import StackSpec, VmSpec
from virtstack.spec.loader import parse_spec

REPO = Path(__file__).resolve().parents[2]
F = "stacks/x.yaml"
# Every password, passphrase and key in this file is a TEST-ONLY value (hunter2 is the example).
# crypt(3) SHA-512 of "test-only" (made with `openssl passwd -6 -salt testonlysalt test-only`).
HASH = (
    "$6$testonlysalt$i2uxHpLdoQWyXYUwaqgOTHuxtIuCUO/nwPlB/RFYIt9RH9LslJV8828u30tRAC10QeKnRk2.57hyeGL6fAVK61"
)


def project(tmp_path: Path) -> Project:
    (tmp_path / "Pulumi.yaml").write_text("name: virtstack\nruntime: python\n")
    (tmp_path / "__main__.py").write_text("")
    return Project(tmp_path, tmp_path / "logs")


# ------------------------------------------------------------------ passphrase


def env_of(tmp_path: Path, **given: str) -> dict[str, str]:
    return engine_env(project(tmp_path), {"PATH": "/usr/bin", **given})


def test_no_passphrase_locally_uses_the_development_one(tmp_path: Path) -> None:
    assert env_of(tmp_path)["PULUMI_CONFIG_PASSPHRASE"] == LOCAL_DEV_PASSPHRASE


def test_an_empty_passphrase_is_an_error(tmp_path: Path) -> None:
    # The regression: a missing repository secret gives PULUMI_CONFIG_PASSPHRASE="", which fell back
    # silently to the public development passphrase.
    with pytest.raises(VirtstackError, match="PULUMI_CONFIG_PASSPHRASE is set but empty"):
        env_of(tmp_path, PULUMI_CONFIG_PASSPHRASE="")


@pytest.mark.parametrize(
    ("given", "where"),
    [
        ({"CI": "true"}, "CI is set"),
        ({"CI": "true", "PULUMI_CONFIG_PASSPHRASE": LOCAL_DEV_PASSPHRASE}, "CI is set"),
        (
            {"PULUMI_BACKEND_URL": "s3://bucket/state", "PULUMI_CONFIG_PASSPHRASE": LOCAL_DEV_PASSPHRASE},
            "is not a local file backend",
        ),
    ],
)
def test_the_development_passphrase_is_refused_in_ci_and_off_the_file_backend(
    tmp_path: Path, given: dict[str, str], where: str
) -> None:
    with pytest.raises(VirtstackError, match=where) as err:
        env_of(tmp_path, **given)
    assert "VIRTSTACK_ALLOW_DEV_PASSPHRASE=1" in str(err.value)


def test_other_backends_get_no_passphrase_added(tmp_path: Path) -> None:
    # Pulumi Cloud or a KMS keep secrets without one; a passphrase stack makes Pulumi ask for it.
    assert "PULUMI_CONFIG_PASSPHRASE" not in env_of(tmp_path, PULUMI_BACKEND_URL="s3://bucket/state")


def test_the_development_passphrase_when_explicitly_allowed(tmp_path: Path) -> None:
    env = env_of(tmp_path, CI="true", VIRTSTACK_ALLOW_DEV_PASSPHRASE="1")
    assert env["PULUMI_CONFIG_PASSPHRASE"] == LOCAL_DEV_PASSPHRASE
    assert "PULUMI_CONFIG_PASSPHRASE" not in env_of(
        tmp_path, CI="true", PULUMI_CONFIG_PASSPHRASE="own-test-only"
    )
    assert env_of(tmp_path, CI="false")["PULUMI_CONFIG_PASSPHRASE"] == LOCAL_DEV_PASSPHRASE


def test_passphrase_files_are_checked(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(VirtstackError, match="is empty"):
        env_of(tmp_path, PULUMI_CONFIG_PASSPHRASE_FILE=str(empty))
    with pytest.raises(VirtstackError, match="cannot be read"):
        env_of(tmp_path, PULUMI_CONFIG_PASSPHRASE_FILE=str(tmp_path / "missing"))
    dev = tmp_path / "dev"
    dev.write_text(LOCAL_DEV_PASSPHRASE + "\n")
    with pytest.raises(VirtstackError, match="public development passphrase and CI is set"):
        env_of(tmp_path, PULUMI_CONFIG_PASSPHRASE_FILE=str(dev), CI="1")


def test_the_cli_refuses_an_empty_passphrase_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "VIRTSTACK_"))}
    env.update(PULUMI_CONFIG_PASSPHRASE="", VIRTSTACK_ROOT=str(REPO), VIRTSTACK_LOG_DIR=str(tmp_path))
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", "from virtstack.cli.main import main; main()", "plan", "-s", "dev"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "PULUMI_CONFIG_PASSPHRASE is set but empty" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, LOCAL_DEV_PASSPHRASE),
        ({"CI": "true"}, "<unset>"),
        ({"CI": "true", "VIRTSTACK_ALLOW_DEV_PASSPHRASE": "1"}, LOCAL_DEV_PASSPHRASE),
        ({"CI": "false"}, LOCAL_DEV_PASSPHRASE),
        ({"PULUMI_BACKEND_URL": "s3://bucket/state"}, "<unset>"),
        ({"PULUMI_CONFIG_PASSPHRASE": ""}, ""),  # left empty: virtstack then refuses it
    ],
)
def test_env_sh_follows_the_same_rules(given: dict[str, str], expected: str) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), **given}
    out = subprocess.run(
        ["bash", "-c", '. scripts/env.sh; printf %s "${PULUMI_CONFIG_PASSPHRASE-<unset>}"'],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == expected


# ------------------------------------------------------------------ state and logs


def test_the_state_directory_is_created_private(tmp_path: Path) -> None:
    proj = project(tmp_path)
    ensure_state_dir(proj, f"file://{tmp_path}/.virtstack/state")
    assert stat.S_IMODE((tmp_path / ".virtstack/state").stat().st_mode) == 0o700


def test_an_existing_default_state_directory_is_tightened_others_left_alone(tmp_path: Path) -> None:
    proj = project(tmp_path)
    state = tmp_path / ".virtstack/state"
    state.mkdir(parents=True, mode=0o755)
    state.chmod(0o755)  # what older setups made
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o750)
    ensure_state_dir(proj, f"file://{state}")
    ensure_state_dir(proj, f"file://{shared}")
    ensure_state_dir(proj, "s3://bucket/state")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750


def test_logs_are_private(tmp_path: Path) -> None:
    log = write_log(tmp_path / "logs", "up-dev", "engine output")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


# ------------------------------------------------------------------ passwords


def stack(user: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "hosts": {
                "h": {
                    "uri": "test:///default",
                    "capacity": {"vcpus": 2, "memory": "2GiB", "disk": "10GiB"},
                    "pools": {"vms": {"path": "/var/lib/virtstack/pools/x"}},
                }
            },
            "images": {"img": {"source": "images/a.qcow2"}},
            "vms": {
                "web": {
                    "image": "img",
                    "vcpus": 1,
                    "memory": "512MiB",
                    "disk": "1GiB",
                    "cloud_init": {"users": [{"name": "ops", **user}]},
                }
            },
        }
    )


def problems(user: dict[str, Any]) -> list[str]:
    try:
        parse_spec(stack(user), F)
    except SpecError as err:
        return str(err).splitlines()
    return []


def users_of(spec: StackSpec) -> list[dict[str, Any]]:
    [vm] = expand_group("web", spec.vms["web"])
    return list(yaml.safe_load(render_user_data(vm))["users"])


def test_a_password_hash_is_rendered_as_hashed_passwd() -> None:
    [user] = users_of(parse_spec(stack({"password_hash": HASH}), F))
    assert user["hashed_passwd"] == HASH and user["lock_passwd"] is False
    assert "plain_text_passwd" not in user


def test_a_plain_password_pasted_as_hash_is_refused_without_echo() -> None:
    [line] = problems({"password_hash": "hunter2"})
    assert line.startswith(f"{F}: vms.web.cloud_init.users[0].password_hash: must be a crypt(3) hash")
    assert "hunter2" not in line


def test_one_password_source_only() -> None:
    [line] = problems({"password": "x-test-only", "password_env": "VIRTSTACK_PASSWORD_OPS"})
    assert line == f"{F}: vms.web.cloud_init.users[0].password_env: set only one of password, password_env"


def test_password_env_only_names_variables_meant_for_it() -> None:
    # A stack file must not copy the state passphrase (or any CI secret) into a guest.
    [line] = problems({"password_env": "PULUMI_CONFIG_PASSPHRASE"})
    assert "must be an environment variable named VIRTSTACK_PASSWORD_<NAME>" in line


def test_password_from_the_environment(tmp_path: Path) -> None:
    spec = parse_spec(stack({"password_env": "VIRTSTACK_PASSWORD_OPS"}), F)
    resolved = resolve_passwords(spec, tmp_path, F, {"VIRTSTACK_PASSWORD_OPS": "from-env-test-only"})
    [user] = users_of(resolved)
    assert user["plain_text_passwd"] == "from-env-test-only"
    assert "from-env-test-only" not in repr(resolved)  # still a SecretStr
    with pytest.raises(SpecError) as err:
        resolve_passwords(spec, tmp_path, F, {})
    assert str(err.value) == (
        f"{F}: vms.web.cloud_init.users[0].password_env: VIRTSTACK_PASSWORD_OPS is not set"
    )


def test_password_from_a_file_in_the_secrets_directory(tmp_path: Path) -> None:
    secrets_dir = tmp_path / ".virtstack" / "secrets"
    secrets_dir.mkdir(parents=True)
    (secrets_dir / "ops").write_text("from-file-test-only\n")
    spec = parse_spec(stack({"password_file": "ops"}), F)
    [user] = users_of(resolve_passwords(spec, tmp_path, F, {}))
    assert user["plain_text_passwd"] == "from-file-test-only"
    # A symlink out of the secrets directory is not followed.
    (secrets_dir / "shadow").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("host-secret-test-only\n")
    with pytest.raises(SpecError, match="leads outside"):
        resolve_passwords(parse_spec(stack({"password_file": "shadow"}), F), tmp_path, F, {})
    [line] = problems({"password_file": "../outside"})
    assert "must be a relative path inside the secrets directory" in line
    [line] = problems({"password_file": "/etc/shadow"})
    assert "must be a relative path inside the secrets directory" in line


def test_the_shipped_stacks_hold_no_password() -> None:
    for path in (REPO / "stacks").glob("*.yaml"):
        assert "password:" not in path.read_text(), path


# ------------------------------------------------------------------ instance-id


def vm_with_password(password: str) -> VmInstance:
    data = {
        "image": "img",
        "vcpus": 1,
        "memory": "512MiB",
        "disk": "1GiB",
        "cloud_init": {"users": [{"name": "ops", "password": password}]},
    }
    [vm] = expand_group("web", VmSpec.model_validate(data))
    return vm


def unkeyed_id(vm: VmInstance) -> str:
    """The instance-id as it was computed before (a plain hash of the user data)."""
    digest = hashlib.sha256(render_user_data(vm).encode() + b"\0")
    return f"{vm.name}-{digest.hexdigest()[:12]}"


def test_the_instance_id_is_no_oracle_for_a_dictionary_attack() -> None:
    # The regression: `hunter2` was recovered offline from the instance-id kept in clear in state.
    key = instance_id_key({"PULUMI_CONFIG_PASSPHRASE": "stack-passphrase-test-only"})
    leaked = instance_id(vm_with_password("hunter2"), key=key)
    dictionary = ["123456", "password", "letmein", "hunter2", "qwerty"]
    assert [w for w in dictionary if unkeyed_id(vm_with_password(w)) == leaked] == []
    # ... while with the key it stays stable and follows the content.
    assert instance_id(vm_with_password("hunter2"), key=key) == leaked
    assert instance_id(vm_with_password("hunter3"), key=key) != leaked
    other = instance_id_key({"PULUMI_CONFIG_PASSPHRASE": "another-test-only"})
    assert instance_id(vm_with_password("hunter2"), key=other) != leaked


def test_the_instance_id_key_comes_from_the_stack_secrets(tmp_path: Path) -> None:
    explicit = instance_id_key({"VIRTSTACK_INSTANCE_ID_KEY": "k-test-only", "PULUMI_CONFIG_PASSPHRASE": "p"})
    assert explicit == instance_id_key({"VIRTSTACK_INSTANCE_ID_KEY": "k-test-only"})
    (tmp_path / "pp").write_text("p-test-only\n")
    from_file = instance_id_key({"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "pp")})
    assert from_file == instance_id_key({"PULUMI_CONFIG_PASSPHRASE": "p-test-only"})
    with pytest.raises(VirtstackError, match="no key for cloud-init instance ids"):
        instance_id_key({})
