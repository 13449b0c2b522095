"""Stack locks on a shared PostgreSQL backend (`PULUMI_BACKEND_URL=postgres://…`).

Pulumi's lock is the same on every backend: write a lock object (pid, user, host, time), list again,
back off if another exists; no lease, no expiry.  On a shared backend the lock's pid belongs to some
operator's or runner's machine, so it proves nothing here: such a lock is never judged stale, only
named, with how to clear it (`pulumi cancel`).

What virtstack adds, in the same database:
- a **lease** per stack for every run that changes it (`up`, `destroy`): a PostgreSQL session-level
  advisory lock, taken atomically before the engine starts and held for the whole run on one
  connection.  Two runs at once: one gets it, the other fails at once naming the holder — instead
  of both writing Pulumi lock objects and possibly both backing off.  The server drops the lease
  when the holder's connection ends (a killed process, a server restart), so it never goes stale;
- a **holder row** per run (table `virtstack_run_holders`: stack, user, host, pid, operation, start
  time and the server process of its connection) that says who holds the lease or left a Pulumi
  lock behind; whether that run is still connected is what `pg_locks` says of its server process.
  Rows of runs that are gone are dropped by the next run that finds no Pulumi lock left.
Previews (plan, drift) only read: they run with a role that may only SELECT.

Public API:
    is_postgres(url) -> bool
    held_locks(url, project, stack) -> list[StackLock]   (Pulumi's lock objects, holders named)
    Lease.acquire(url, project, stack, operation) -> Lease   (raises StackBusy); .release()
    StackBusy(VirtstackError)
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from virtstack.errors import VirtstackError
from virtstack.locks import StackLock
from virtstack.settings import redact_url

__all__ = ["HOLDERS_TABLE", "Lease", "StackBusy", "held_locks", "is_postgres"]

HOLDERS_TABLE = "virtstack_run_holders"
_SCHEMES = ("postgres://", "postgresql://")
_CREATE = f"""CREATE TABLE IF NOT EXISTS {HOLDERS_TABLE} (
    stack TEXT NOT NULL,
    backend_pid INTEGER NOT NULL,
    username TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    operation TEXT NOT NULL,
    started TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    PRIMARY KEY (stack, backend_pid, started)
)"""
# Whether a row's run still holds its lease: its connection's server process holds an advisory lock.
_CONNECTED = (
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.backend_pid)"
)


class StackBusy(VirtstackError):
    """Another run holds the stack's lease; `holder` names it."""

    def __init__(self, stack: str, holder: StackLock) -> None:
        super().__init__(f"stack {stack} is locked by another update ({holder.describe()})")
        self.holder = holder


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(_SCHEMES)


def _conninfo(url: str) -> tuple[str, str]:
    """(libpq connection URI, state table): Pulumi's own `table` parameter is not libpq's."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    table = next((v for k, v in query if k == "table"), "") or "pulumi_state"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", table):
        raise VirtstackError(f"PULUMI_BACKEND_URL: table={table!r} is not a plain SQL table name")
    rest = [(k, v) for k, v in query if k != "table"]
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest))), table


def _connect(url: str) -> Any:
    import psycopg  # only a postgres:// backend needs the driver

    conninfo, _ = _conninfo(url)
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=15)
    except psycopg.Error as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VirtstackError(f"cannot reach the state backend {redact_url(url)}: {first}") from None


def _stack_key(table: str, project: str, stack: str) -> str:
    return f"{table}/{project}/{stack.rsplit('/', 1)[-1]}"


def _holders(cur: Any, key: str) -> list[dict[str, Any]]:
    """The stack's holder rows, newest first, each with `connected`."""
    cur.execute("SELECT to_regclass(%s)::text", (HOLDERS_TABLE,))
    if cur.fetchone()[0] is None:
        return []
    cur.execute(
        f"SELECT username, hostname, pid, operation, started, {_CONNECTED} FROM {HOLDERS_TABLE} h "
        "WHERE stack = %s ORDER BY started DESC",
        (key,),
    )
    names = ("username", "hostname", "pid", "operation", "started", "connected")
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(value, "strftime") else str(value)


def _lock_keys(cur: Any, table: str, project: str, stack: str) -> list[tuple[str, Any]]:
    name = stack.rsplit("/", 1)[-1]
    cur.execute(f"SELECT key, data FROM {table} WHERE strpos(key, '.pulumi/locks/') > 0")
    pattern = re.compile(rf"(^|/)\.pulumi/locks/[^/]+/{re.escape(project)}/{re.escape(name)}/[^/]+\.json$")
    return [(key, data) for key, data in cur.fetchall() if pattern.search(key)]


def held_locks(url: str, project: str, stack: str) -> list[StackLock]:
    """Pulumi's lock objects of the stack, each naming its holder (user, host, pid, time) and, when
    virtstack took it, the operation and whether that run is still connected.  Never removes any."""
    import psycopg

    _, table = _conninfo(url)
    key = _stack_key(table, project, stack)
    with _connect(url) as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT to_regclass(%s)::text", (table,))
            if cur.fetchone()[0] is None:
                return []
            rows = _lock_keys(cur, table, project, stack)
            if not rows:
                return []
            holders = [
                h
                for h in _holders(cur, key)
                if (h["pid"], h["hostname"]) != (os.getpid(), socket.gethostname())
            ]
        except psycopg.Error as err:
            raise VirtstackError(f"cannot read the locks in {redact_url(url)}: {str(err).strip()}") from None
    locks = []
    for lock_key, data in rows:
        content = _blob(data)
        pid, host = int(content.get("pid", 0)), str(content.get("hostname", ""))
        operation, why = "", "taken outside virtstack: whether it still runs cannot be checked from here"
        holder = next((h for h in holders if h["hostname"] == host), None)
        if holder is not None:
            operation = f"virtstack {holder['operation']}"
            why = (
                "that run is still connected to the state server"
                if holder["connected"]
                else "that run's connection to the state server has ended (killed, or the server restarted)"
            )
        locks.append(
            StackLock(
                path=_path(lock_key),
                pid=pid,
                hostname=host,
                timestamp=str(content.get("timestamp", "")),
                why_held=why,
                username=str(content.get("username", "")),
                operation=operation,
            )
        )
    return locks


def _blob(data: Any) -> dict[str, Any]:
    """A stored object's JSON: Pulumi keeps each one as {"data": base64 of its bytes}."""
    try:
        stored = data if isinstance(data, dict) else json.loads(data or "{}")
        if isinstance(stored, dict) and isinstance(stored.get("data"), str):
            stored = json.loads(base64.b64decode(stored["data"]))
    except (ValueError, TypeError):
        return {}
    return stored if isinstance(stored, dict) else {}


def _path(key: str) -> Any:
    from pathlib import PurePosixPath

    return PurePosixPath(key)


@dataclass
class Lease:
    """The stack's lease: held while `conn` is open (see the module docstring)."""

    url: str
    key: str
    conn: Any

    @classmethod
    def acquire(cls, url: str, project: str, stack: str, operation: str) -> Lease:
        import psycopg

        _, table = _conninfo(url)
        key = _stack_key(table, project, stack)
        conn = _connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
                if not cur.fetchone()[0]:
                    holder = next((h for h in _holders(cur, key) if h["connected"]), None)
                    conn.close()
                    raise StackBusy(stack, _busy(holder))
                cur.execute("SELECT to_regclass(%s)::text", (HOLDERS_TABLE,))
                if cur.fetchone()[0] is None:
                    cur.execute(_CREATE)
                cur.execute("SELECT to_regclass(%s)::text", (table,))
                state_exists = cur.fetchone()[0] is not None
                if not state_exists or not _lock_keys(cur, table, project, stack):
                    # Nothing is left of earlier runs: their rows name nobody any more.
                    cur.execute(f"DELETE FROM {HOLDERS_TABLE} WHERE stack = %s", (key,))
                cur.execute(
                    f"INSERT INTO {HOLDERS_TABLE} (stack, backend_pid, username, hostname, pid, operation) "
                    "VALUES (%s, pg_backend_pid(), %s, %s, %s, %s)",
                    (key, _user(), socket.gethostname(), os.getpid(), operation),
                )
        except psycopg.Error as err:
            conn.close()
            where = redact_url(url)
            raise VirtstackError(f"cannot lock stack {stack} in {where}: {str(err).strip()}") from None
        return cls(url, key, conn)

    def release(self) -> None:
        """Give the lease back (the holder row goes; a row left by a killed run is overwritten by
        the next holder)."""
        # A server that went away has dropped the lease already.
        with contextlib.suppress(Exception), self.conn.cursor() as cur:
            cur.execute(
                f"DELETE FROM {HOLDERS_TABLE} WHERE stack = %s AND backend_pid = pg_backend_pid()",
                (self.key,),
            )
            cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (self.key,))
        with contextlib.suppress(Exception):
            self.conn.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _busy(holder: dict[str, Any] | None) -> StackLock:
    if holder is None:
        return StackLock(_path(""), 0, "", "", why_held="its holder record is not readable; still running")
    return StackLock(
        path=_path(""),
        pid=int(holder["pid"]),
        hostname=str(holder["hostname"]),
        timestamp=_when(holder["started"]),
        why_held="still running",
        username=str(holder["username"]),
        operation=f"virtstack {holder['operation']}",
    )
