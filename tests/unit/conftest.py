"""Shared unit-test setup."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _instance_id_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rendering meta-data needs the instance-id key (virtstack.cloudinit.instance_id_key); under CI no
    # passphrase is set, so the unit tests bring their own.  TEST-ONLY value.
    monkeypatch.setenv("VIRTSTACK_INSTANCE_ID_KEY", "virtstack-unit-test-only-key")
