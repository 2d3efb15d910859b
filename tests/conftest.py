"""Fixtures live in one plugin module per part, so each part's fixtures stay beside its owners."""

pytest_plugins = [
    "tests.fixtures_workspace",
    "tests.fixtures_spark",
    "tests.fixtures_storage",
]
