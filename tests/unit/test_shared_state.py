"""Shared backends (virtstack.shared_state, settings): URL handling and how a holder is named.  The
locking itself runs against a real PostgreSQL in tests/integration/test_shared_state.py."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner

from virtstack.cli.main import cli
from virtstack.locks import StackLock, clear_stale_locks
from virtstack.settings import Settings, SettingsError, redact_url
from virtstack.shared_state import _blob, _conninfo, is_postgres


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgres://ops:s3cret@db:5432/state?sslmode=verify-full",
            "postgres://ops:****@db:5432/state?sslmode=verify-full",
        ),
        ("postgres://ops@db/state?passfile=/etc/pgpass", "postgres://ops@db/state?passfile=/etc/pgpass"),
        ("postgresql://:pw@db/state", "postgresql://:****@db/state"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("file:///var/lib/virtstack/state", "file:///var/lib/virtstack/state"),
    ],
)
def test_a_backend_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shared"),
    [
        ("postgres://ops@db/state", True),
        ("s3://bucket", True),
        ("gs://bucket", True),
        ("https://api.pulumi.com", True),
        ("file:///tmp/state", False),
    ],
)
def test_every_backend_but_a_file_one_is_shared(url: str, shared: bool) -> None:
    assert Settings.from_env({"PULUMI_BACKEND_URL": url}).shared_backend is shared
    assert is_postgres(url) is url.startswith("postgres://")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://ops:pw@db/state",
            "PULUMI_BACKEND_URL=mysql://ops:****@db/state is not a state backend (file://, ",
        ),
        ("/var/lib/state", "PULUMI_BACKEND_URL=/var/lib/state is not a state backend"),
    ],
)
def test_an_unknown_backend_is_one_line_naming_the_variable_without_the_password(
    url: str, message: str
) -> None:
    settings = Settings.from_env({"PULUMI_BACKEND_URL": url})  # the provider reads settings too: no raise
    with pytest.raises(SettingsError) as caught:
        settings.engine_env({"PULUMI_BACKEND_URL": url, "PATH": "/usr/bin"})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert ":pw@" not in str(caught.value)


def test_the_command_names_an_unknown_backend_in_one_line() -> None:
    env = {
        "PULUMI_BACKEND_URL": "mysql://ops:pw@db/state",
        "PATH": "/usr/bin",
        "PULUMI_CONFIG_PASSPHRASE": "x",
    }
    result = CliRunner().invoke(cli, ["plan", "-s", "dev"], env=env)
    assert (result.exit_code, result.output) == (
        1,
        "error: PULUMI_BACKEND_URL=mysql://ops:****@db/state is not a state backend (file://, postgres://, "
        "postgresql://, s3://, azblob://, gs://, https://)\n",
    )


@pytest.mark.parametrize(
    ("url", "conninfo", "table"),
    [
        ("postgres://u@h:1/d?sslmode=disable", "postgresql://u@h:1/d?sslmode=disable", "pulumi_state"),
        (
            "postgres://u@h/d?table=team_state&sslmode=verify-full",
            "postgresql://u@h/d?sslmode=verify-full",
            "team_state",
        ),
    ],
)
def test_pulumis_table_parameter_is_not_passed_to_libpq(url: str, conninfo: str, table: str) -> None:
    assert _conninfo(url) == (conninfo, table)


def test_a_table_name_that_is_not_plain_is_refused() -> None:
    with pytest.raises(Exception, match="table='x; drop' is not a plain SQL table name"):
        _conninfo("postgres://u@h/d?table=x;%20drop")


@pytest.mark.parametrize(
    ("lock", "described"),
    [
        (
            StackLock(
                PurePosixPath("k"),
                41,
                "ci-runner-3",
                "2026-11-28T10:00:00Z",
                "still running",
                "ops",
                "virtstack up",
            ),
            "virtstack up by ops@ci-runner-3 (pid 41) since 2026-11-28T10:00:00Z; still running",
        ),
        (
            StackLock(
                PurePosixPath("k"), 41, "laptop", "2026-11-28T10:00:00Z", "taken outside virtstack", "ann"
            ),
            "ann@laptop (pid 41) since 2026-11-28T10:00:00Z; taken outside virtstack",
        ),
        (
            StackLock(Path("k"), 41, "laptop", "2026-11-28T10:00:00Z"),
            "pid 41 on laptop since 2026-11-28T10:00:00Z",
        ),
    ],
)
def test_a_held_lock_names_its_holder(lock: StackLock, described: str) -> None:
    assert lock.describe() == described


def test_the_file_backends_stale_lock_rule_never_applies_to_a_shared_backend() -> None:
    # A pid of another machine proves nothing: nothing is removed, whatever the locks are.
    assert clear_stale_locks("postgres://u@127.0.0.1:9/d", "dev") == ([], [])


def test_virtstack_env_lists_the_backend_without_its_password() -> None:
    env = {
        "PULUMI_BACKEND_URL": "postgres://ops:s3cret@db/state",
        "PULUMI_CONFIG_PASSPHRASE": "x",
        "PATH": "/usr/bin",
    }
    listed = CliRunner().invoke(cli, ["env"], env=env)
    assert "PULUMI_BACKEND_URL='postgres://ops:****@db/state'\n" in listed.output
    assert "s3cret" not in listed.output
    shell = CliRunner().invoke(cli, ["env", "--shell"], env=env)
    assert "export PULUMI_BACKEND_URL=postgres://ops:s3cret@db/state\n" in shell.output  # for eval only


@pytest.mark.parametrize(
    ("stored", "content"),
    [
        # What Pulumi's PostgreSQL bucket stores: {"data": base64 of the object's bytes}.
        ({"data": "eyJwaWQiOiA3LCAiaG9zdG5hbWUiOiAiaCJ9"}, {"pid": 7, "hostname": "h"}),
        ('{"data": "eyJwaWQiOiA3LCAiaG9zdG5hbWUiOiAiaCJ9"}', {"pid": 7, "hostname": "h"}),
        ({"pid": 7}, {"pid": 7}),
        ('{"data": "not base64!"}', {}),
        ("[1, 2]", {}),
    ],
)
def test_a_stored_lock_object_is_read_through_pulumis_wrapping(
    stored: object, content: dict[str, object]
) -> None:
    assert _blob(stored) == content
