"""Moves between hosts (virtstack.provider.moves): which changes are moves, and the journal's rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtstack import contract
from virtstack.ops.moveplan import downtime_seconds, move_words
from virtstack.provider import moves

A, B = "qemu:///system", "qemu+ssh://b/system"
ROOT = {
    "uri": A,
    "host": "a",
    "owner": "p/s",
    "pool": "p",
    "name": "vm-root",
    "role": "root",
    "format": "qcow2",
    "size": 3 * 1024**3,
    "backing_path": "/pools/a/base",
    "source": None,
}


def _with(base: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {**base, **over}


@pytest.mark.parametrize(
    ("news", "moved"),
    [
        (_with(ROOT, uri=B, host="b", backing_path="/pools/b/base"), True),  # drained: root disk moves
        (_with(ROOT, uri=B, host="b", pool="other", backing_path="/pools/b/base"), True),  # other pool name
        (_with(ROOT, uri=B, host="b", size=4 * 1024**3), True),  # moved and grown
        (_with(ROOT, uri=B, size=1024**3), False),  # a shrink is a new disk wherever it is
        (_with(ROOT, uri=B, source="other.qcow2"), False),  # another image: a new disk
        (_with(ROOT, uri=B, name="vm-root2"), False),  # renamed: a new disk
        (_with(ROOT, backing_path="/pools/a/base2"), False),  # same host: not a move
        (_with(ROOT, uri=B, role="seed"), False),  # a seed holds no data: replaced
        (_with(ROOT, uri=B, role="base"), False),
        (_with(ROOT, host="b"), False),  # only the label: nothing moves
    ],
)
def test_which_volume_changes_are_moves(news: dict[str, Any], moved: bool) -> None:
    assert moves.volume_is_moved(ROOT, news) is moved
    keys = moves.move_replaces(contract.VOLUME, ROOT, news, contract.replaces(contract.VOLUME, ROOT, news))
    assert (keys == []) is (moved or not contract.replaces(contract.VOLUME, ROOT, news))


def test_a_seed_whose_host_changes_is_replaced() -> None:
    seed = _with(ROOT, role="seed", name="vm-seed", backing_path=None, size=None)
    news = _with(seed, uri=B)
    keys = moves.move_replaces(contract.VOLUME, seed, news, contract.replaces(contract.VOLUME, seed, news))
    assert keys == ["uri"]


DOMAIN = {"uri": A, "host": "a", "name": "vm", "owner": "p/s", "memory": 1024**3}


@pytest.mark.parametrize(
    ("olds", "news", "moved", "replace"),
    [
        (DOMAIN, _with(DOMAIN, uri=B), True, []),
        (DOMAIN, _with(DOMAIN, uri=B, memory=2 * 1024**3), True, []),
        (DOMAIN, _with(DOMAIN, uri=B, name="vm2"), False, ["name", "uri"]),  # renamed: a new VM
        (DOMAIN, _with(DOMAIN, name="vm2"), False, ["name"]),
        ({}, DOMAIN, False, ["name", "uri"]),  # created: not a move
        (DOMAIN, _with(DOMAIN, uri=B, adopt="owned"), False, ["uri"]),  # imported: its disks are not ours
    ],
)
def test_which_domain_changes_are_moves(
    olds: dict[str, Any], news: dict[str, Any], moved: bool, replace: list[str]
) -> None:
    assert moves.domain_is_moved(olds, news) is moved
    keys = moves.move_replaces(contract.DOMAIN, olds, news, contract.replaces(contract.DOMAIN, olds, news))
    assert keys == replace


def test_the_provider_diff_of_a_moved_domain_is_an_update() -> None:
    from virtstack.provider.domains import DomainProvider

    diff = DomainProvider().diff("id", DOMAIN, _with(DOMAIN, uri=B))
    assert diff.changes is True
    assert not diff.replaces


def test_journal_names_never_clash_with_the_disk() -> None:
    assert moves.marker_name("vm-root") == "vm-root.virtstack-moving"
    assert moves.flat_name("vm-root") == "vm-root.virtstack-flat"
    assert moves.marker_name("vm-root") != moves.flat_name("vm-root")


@given(st.integers(min_value=0, max_value=2**44), st.integers(min_value=0, max_value=2**44))
def test_downtime_grows_with_the_disks(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert 1 <= downtime_seconds(low) <= downtime_seconds(high)


def test_move_words() -> None:
    assert move_words({"host": "a"}, {"host": "b"}, 0) == "move a → b (stops for about 10 s, disks kept)"
    assert (
        move_words({"uri": A}, {"uri": B}, 2 * 10**9) == f"move {A} → {B} (stops for about 30 s, disks kept)"
    )
