"""A process serving an ONNX bundle never imports torch, scipy or the evaluation package (brief: CPU-only
clinics; ~700 MiB and ~0.5 s of imports saved)."""

from __future__ import annotations

import os
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
print(json.dumps({"primary": answer["diagnosis"]["primary"], "heavy": heavy}))
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
