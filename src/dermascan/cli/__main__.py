"""``python -m dermascan.cli``: the same command as ``dermascan``."""

from dermascan.cli import app

app()
