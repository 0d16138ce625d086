"""The one base class of DermaScan's user-facing errors.

Every error a user can cause (a bad path, a malformed file, a missing model file, an impossible option)
subclasses :class:`DermaScanError` and carries a message that names the bad value and the fix. The CLI
turns any of them into one clean line and exit code 2 (``dermascan.cli``); the HTTP service maps them to its
JSON error shape. Anything else is a bug and keeps its traceback.

Each subclass also derives from the built-in exception it refines (``ValueError``, ``FileNotFoundError``,
``RuntimeError``), so library callers can keep catching those.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DermaScanError"]


class DermaScanError(Exception):
    """An error the user can fix; its message says what is wrong and how to fix it."""


class ConfigError(DermaScanError, ValueError):
    """A configuration value or option that cannot be used, named with the accepted values."""
