"""The `dermascan` command. Thin: parse, call the library, print. Run `dermascan --help`.

One command module per user: ``data`` and ``training`` and ``audit`` for the ML engineer, ``deploy`` for
whoever ships a model, ``lifecycle`` for whoever promotes one, ``service`` and ``monitoring`` for the
operator, ``learning`` for whoever pays for labels, ``demo`` for everyone. The user-facing errors are mapped
once, in :mod:`dermascan.cli._app`.
"""

from __future__ import annotations

from dermascan.cli import (  # noqa: F401 (each registers its commands)
    audit,
    data,
    demo,
    deploy,
    learning,
    lifecycle,
    monitoring,
    service,
    training,
)
from dermascan.cli._app import app

__all__ = ["app"]
