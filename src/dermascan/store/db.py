"""The one door to the database: URLs, engines, sessions and migrations.

SQLite (WAL journal, foreign keys on) in a data folder by default; PostgreSQL by URL through psycopg 3
(``postgresql+psycopg://user@host:5432/db``; a plain ``postgresql://`` URL is read as psycopg 3 too).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dermascan.errors import DermaScanError

MIGRATIONS = Path(__file__).parent / "migrations"
DB_FILE = "dermascan.db"


class StoreError(DermaScanError, RuntimeError):
    """The store cannot be used (bad URL, unreachable server, schema not migrated), with the fix."""


def default_url(data_dir: str | os.PathLike[str]) -> str:
    """SQLite file in ``data_dir`` (created if missing)."""
    folder = Path(data_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DB_FILE}"


def normalize_url(url: str) -> str:
    """Read ``postgresql://`` and ``postgres://`` as psycopg 3 (SQLAlchemy's default driver would be psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")  # several worker threads write: wait instead of failing at once
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``, set up for this store (SQLite pragmas, pre-ping for servers).

    Raises:
        StoreError: the URL cannot be parsed or names an unsupported database.
    """
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StoreError(
            f"--db {url!r} is not a database URL; use sqlite:///path/dermascan.db or "
            "postgresql+psycopg://user@host:5432/db"
        ) from e
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    raise StoreError(f"database {backend!r} is not supported: use SQLite or PostgreSQL")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (routes build answers from committed rows)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back (and re-raised) on any error."""
    with sessions() as session, session.begin():
        yield session


# -------------------------------------------------------------------------------------------- migrations


def _alembic_config(engine: Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database to ``revision``.

    Returns:
        (revision before, revision after); ``None`` means an empty database.

    Raises:
        StoreError: the database cannot be reached or migrated.
    """
    from alembic import command

    try:
        before = current_revision(engine)
        command.upgrade(_alembic_config(engine), revision)
        return before, current_revision(engine)
    except SQLAlchemyError as e:
        raise StoreError(
            f"cannot migrate {engine.url.render_as_string(hide_password=True)}: {e.__class__.__name__}: "
            f"{str(e).splitlines()[0]}"
        ) from e


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, ``None`` for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision this package ships."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None  # the package ships at least one migration
    return head


def check_schema(engine: Engine) -> None:
    """Refuse a database that is not at the head revision (the service must not write an older schema).

    Raises:
        StoreError: unreachable, empty or outdated database, with the command that fixes it.
    """
    url = engine.url.render_as_string(hide_password=True)
    try:
        rev = current_revision(engine)
    except SQLAlchemyError as e:
        raise StoreError(f"cannot reach the database {url}: {str(e).splitlines()[0]}") from e
    if rev != head_revision():
        state = "empty" if rev is None else f"at revision {rev}"
        raise StoreError(f"database {url} is {state}, not at {head_revision()}: run `dermascan db upgrade --db {url}`")


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


__all__ = [
    "StoreError",
    "check_schema",
    "current_revision",
    "default_url",
    "head_revision",
    "make_engine",
    "normalize_url",
    "session_factory",
    "transaction",
    "upgrade",
]
