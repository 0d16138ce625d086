"""Every store test runs on SQLite (a temp file) and on a real PostgreSQL server (see ``tests/_postgres.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests._postgres import admin_engine, postgres_database

from dermascan.store import db


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    engine = admin_engine()
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with postgres_database(request.getfixturevalue("postgres_admin")) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database."""
    e = db.make_engine(db_url)
    db.upgrade(e)
    yield e
    e.dispose()
