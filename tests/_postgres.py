"""The real PostgreSQL the store tests run on (never a mock).

The server of ``DERMASCAN_TEST_POSTGRES_URL`` (default: the local PostgreSQL 15 that development and CI
machines run, ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Each test gets its own database, created
from that connection and dropped afterwards, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from dermascan.store import db

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str:
    return db.normalize_url(os.environ.get("DERMASCAN_TEST_POSTGRES_URL", DEFAULT_POSTGRES))


def admin_engine() -> Engine:
    """An autocommit engine on the test server; fails the test, saying how to provide one, if none answers."""
    url = postgres_admin_url()
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as e:
        engine.dispose()
        pytest.fail(
            f"no PostgreSQL answers at {make_url(url).render_as_string(hide_password=True)} "
            f"({str(e).splitlines()[0]}). The store tests need a real server: start the local PostgreSQL 15 "
            "(`pg_ctlcluster 15 main start`, trust auth, database `test`) or point DERMASCAN_TEST_POSTGRES_URL at "
            "one (postgresql+psycopg://user@host:port/db; the user must be allowed to CREATE DATABASE)",
            pytrace=False,
        )
    return engine


@contextlib.contextmanager
def postgres_database(admin: Engine) -> Iterator[str]:
    """A new, empty database on the admin connection's server; its URL. Dropped afterwards."""
    name = f"dermascan_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
