"""A trained tiny run exported once per session, with its monitoring reference (shared by the monitor tests)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def monitored_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dermascan.export import export_bundle

    return export_bundle(tiny_run, tmp_path_factory.mktemp("bundle") / "b", parity_runtimes=["onnxruntime"])
