"""The `clients` tests run real client libraries in their own venvs: slow, so only when asked for."""

from __future__ import annotations

import os

import pytest

from tests.clients.venvs import ENABLE_ENV


@pytest.fixture(autouse=True)
def _only_when_selected(request: pytest.FixtureRequest) -> None:
    if "clients" not in (request.config.option.markexpr or "") and not os.environ.get(ENABLE_ENV):
        pytest.skip(f"runs client libraries in cached venvs (minutes the first time): `-m clients` or {ENABLE_ENV}=1")
