"""A real service per test module: a tiny random ONNX bundle (32 px), a SQLite store in a temp folder, uvicorn on
a free 127.0.0.1 port in a thread (started and waited for through /readyz), httpx clients."""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine

from dermascan.serving.server import BackgroundServer
from dermascan.serving.settings import ServeSettings
from dermascan.store import clinics, db
from dermascan.testing import random_bundle, synthetic_jpeg

PATIENT_KEY = "test-patient-key-0123456789abcdef"


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    return synthetic_jpeg(width, height, seed=seed)


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png(width: int = 48, height: int = 40, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)), "PNG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass
class Live:
    """A running service and what the tests need to talk to it."""

    url: str
    db_url: str
    engine: Engine
    keys: dict[str, str]  # clinic id (or "revoked") -> key
    server: BackgroundServer
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, clinic: str | None = "clinic-a") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[clinic]}"} if clinic else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        self.clients.append(c)
        return c

    def analyze(self, clinic: str = "clinic-a", image: bytes | None = None, **body: Any) -> httpx.Response:
        payload = {
            "image": b64(image if image is not None else jpeg()),
            "clinic_id": clinic,
            "patient_id": "P-1",
            **body,
        }
        return self.client(clinic).post("/api/v1/analyze", json=payload)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_bundle(tmp_path_factory.mktemp("bundle"), "resnet18", image_size=32, parity_runtimes=["onnxruntime"])


@contextlib.contextmanager
def start_service(folder: Path, bundle: Path, db_url: str | None = None, **overrides: Any) -> Iterator[Live]:
    """Store (SQLite in ``folder`` unless ``db_url``) with clinics ``clinic-a`` and ``clinic-b`` (one key each) and
    a revoked key, then the server."""
    db_url = db_url or f"sqlite:///{folder / 'store.db'}"
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    keys = {}
    with db.transaction(db.session_factory(engine)) as session:
        for name in ("Clinic A", "Clinic B"):
            clinic, keys[clinic.id] = clinics.add_clinic(session, name)
        _, keys["revoked"] = clinics.add_clinic(session, "Clinic C")
        clinics.revoke(session, "clinic-c")
    settings = ServeSettings(
        bundle=bundle, db=db_url, patient_key=PATIENT_KEY, runtime="onnxruntime", threads=1, **overrides
    )
    server = BackgroundServer(settings).start()
    live = Live(server.url, db_url, engine, keys, server)
    try:
        yield live
    finally:
        for c in live.clients:
            c.close()
        server.stop()
        engine.dispose()


@pytest.fixture(scope="module")
def live(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with start_service(tmp_path_factory.mktemp("service"), tiny_bundle) as service:
        yield service
