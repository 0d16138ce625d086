"""The store: SQLAlchemy 2 models, Alembic migrations and one repository module per table group.

* :mod:`~dermascan.store.db` - URLs, engines, sessions, :func:`~dermascan.store.db.upgrade` (SQLite WAL by default,
  PostgreSQL through psycopg 3 by URL).
* :mod:`~dermascan.store.models` - the tables (clinics, api_keys, predictions, feedback, access_log).
* repositories: :mod:`~dermascan.store.clinics` (clinics and keys), :mod:`~dermascan.store.predictions`,
  :mod:`~dermascan.store.feedback`, :mod:`~dermascan.store.access`.
* :mod:`~dermascan.store.identity` - API keys and the keyed patient hash; :mod:`~dermascan.store.images` - optional
  image keeping.
"""

from dermascan.store.db import StoreError, check_schema, default_url, make_engine, session_factory, transaction, upgrade

__all__ = ["StoreError", "check_schema", "default_url", "make_engine", "session_factory", "transaction", "upgrade"]
