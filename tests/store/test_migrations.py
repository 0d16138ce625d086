"""`dermascan db upgrade` on an empty and on an up-to-date database; the models match the migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from typer.testing import CliRunner

from dermascan.cli import app
from dermascan.store import db
from dermascan.store.models import Base

TABLES = {"clinics", "api_keys", "predictions", "feedback", "access_log", "alembic_version"}


def test_upgrade_empty_then_up_to_date(db_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["db", "upgrade", "--db", db_url])
    assert first.exit_code == 0, first.output
    assert f"database at revision {db.head_revision()} (was empty)" in first.output
    engine = db.make_engine(db_url)
    try:
        assert db.table_names(engine) >= TABLES
        db.check_schema(engine)  # at head
        with engine.begin() as conn:  # data survives a second upgrade
            conn.execute(text("INSERT INTO clinics (id, name, created_at) VALUES ('c1', 'C1', CURRENT_TIMESTAMP)"))
        again = runner.invoke(app, ["db", "upgrade", "--db", db_url])
        assert again.exit_code == 0 and again.output.strip() == f"database at revision {db.head_revision()}"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM clinics")).scalars().all() == ["C1"]
    finally:
        engine.dispose()


def test_models_match_migrations(engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_outdated_database_is_refused_with_the_fix(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        try:
            db.check_schema(engine)
            raise AssertionError("an empty database must be refused")
        except db.StoreError as e:
            assert "is empty" in str(e) and "dermascan db upgrade --db" in str(e)
    finally:
        engine.dispose()


def test_bad_url_is_explained() -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", "mysql+nothing://x/y"])
    assert result.exit_code == 2
    assert "not supported" in result.output or "not a database URL" in result.output
