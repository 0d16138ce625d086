"""The `dermascan` command. Thin: parse, call the library, print. Run `dermascan --help`.

One command module per user: ``data`` and ``training`` and ``audit`` for the ML engineer, ``deploy`` for
whoever ships a model, ``service`` and ``monitoring`` for the operator, ``demo`` for everyone. The user-facing
errors are mapped once, in :mod:`dermascan.cli._app`.
"""

from __future__ import annotations

from dermascan.cli import audit, data, demo, deploy, monitoring, service, training  # noqa: F401 (each registers)
from dermascan.cli._app import app

__all__ = ["app"]
