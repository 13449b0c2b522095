from __future__ import annotations

import pytest

from tests.integration.realenv import check_real_parts


@pytest.fixture(scope="session")
def real_parts() -> None:
    check_real_parts()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
