"""Shared unit-test setup."""

from __future__ import annotations

from typing import NoReturn

import pytest


@pytest.fixture(autouse=True)
def _instance_id_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rendering meta-data needs the instance-id key (virtstack.cloudinit.instance_id_key); under CI no
    # passphrase is set, so the unit tests bring their own.  TEST-ONLY value.
    monkeypatch.setenv("VIRTSTACK_INSTANCE_ID_KEY", "virtstack-unit-test-only-key")


@pytest.fixture
def refuse_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expanding counts into VMs is an error in this test: whatever it checks must be refused before
    (the bound is "never expanded", not a wall-clock time)."""

    def expanded(*_args: object, **_kwargs: object) -> NoReturn:
        raise AssertionError("the fleet was expanded before its totals were checked")

    for target in ("virtstack.fleet.expand_group", "virtstack.fleet.expand_fleet"):
        monkeypatch.setattr(target, expanded)
    monkeypatch.setattr("virtstack.spec.loader.expand_fleet", expanded)
