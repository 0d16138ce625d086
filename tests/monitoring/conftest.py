"""The bundle of the monitor tests, exported once per session with its monitoring reference: a model that tells
melanoma apart well enough for the scenarios to mean something (2 epochs on 800 melanoma-enriched 32 px images,
threshold locked on validation: :func:`dermascan.testing.monitored_bundle`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermascan.testing import monitored_bundle


@pytest.fixture(scope="session")
def sim_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return monitored_bundle(tmp_path_factory.mktemp("sim"), images=800, epochs=2)
