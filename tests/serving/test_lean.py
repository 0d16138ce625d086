"""A process serving an ONNX bundle never imports torch, scipy or the evaluation package (brief: CPU-only
clinics; ~700 MiB and ~0.5 s of imports saved)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CODE = """
import base64, io, json, sys, tempfile, urllib.request
from PIL import Image
from dermascan.serving.server import BackgroundServer
from dermascan.serving.settings import ServeSettings
from dermascan.store import clinics, db

url = "sqlite:///" + tempfile.mkdtemp() + "/s.db"
engine = db.make_engine(url)
db.upgrade(engine)
with db.transaction(db.session_factory(engine)) as s:
    _, key = clinics.add_clinic(s, "a")
buf = io.BytesIO()
Image.new("RGB", (64, 48), (200, 150, 120)).save(buf, format="JPEG")
body = {"image": base64.b64encode(buf.getvalue()).decode(), "clinic_id": "a", "patient_id": "p"}
with BackgroundServer(ServeSettings(bundle=sys.argv[1], db=url, dev=True, runtime="onnxruntime")) as server:
    req = urllib.request.Request(server.url + "/api/v1/analyze", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
    answer = json.load(urllib.request.urlopen(req, timeout=60))
heavy = [m for m in ("torch", "scipy", "sklearn", "lightning", "dermascan.evaluation") if m in sys.modules]
import importlib.metadata as md
owners = md.packages_distributions()
tops = {m.split(".")[0] for m in list(sys.modules)}
dists = {t: owners[t] for t in sorted(tops) if t in owners}
print(json.dumps({"primary": answer["diagnosis"]["primary"], "heavy": heavy, "dists": dists}))
"""


def test_serving_an_onnx_bundle_does_not_import_torch(tiny_bundle: Path) -> None:
    import json

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, "-c", CODE, str(tiny_bundle)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["primary"] and out["heavy"] == [], f"the serving process imported {out['heavy']}"
    # The container image installs deploy/requirements/cpu.txt and the package with --no-deps: everything the
    # live process imported must come with those lines.
    image = _closure(_requirements(ROOT / "deploy" / "requirements" / "cpu.txt"))
    # a namespace package (opentelemetry) has several owners: any one of them installed provides the import
    # orjson: libraries import it when present (dvc brings it into the dev venv) and fall back without it
    provided = image | {"dermascan", "setuptools", "orjson"}
    missing = {t: o for t, o in out["dists"].items() if not {_norm(d) for d in o} & provided}
    assert not missing, f"deploy/requirements/serve.txt lacks {sorted(missing)}"
    assert "torch" not in image


ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names += _requirements(path.parent / line[3:])
        elif line:
            names.append(_norm(re.split(r"[\[=<>~ ;]", line)[0]))
    return names


def _closure(names: list[str]) -> set[str]:
    """The distributions pip installs for these names: each one and, recursively, its required dependencies."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            # skip optional extras' requirements; requests marked for an extra are not installed by default
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return seen
