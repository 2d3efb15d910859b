"""Fixtures live in one plugin module per part, so each part's fixtures stay beside its owners."""

import pytest

pytest_plugins = [
    "tests.fixtures_workspace",
    "tests.fixtures_spark",
    "tests.fixtures_storage",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the shared fixtures are marked for what those start: `-m "not server"` skips them."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "workspace" in names or "client" in names:
            item.add_marker(pytest.mark.server)
        if "spark_pool" in names:
            item.add_marker(pytest.mark.spark)
