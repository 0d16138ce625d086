"""The direction of imports (DESIGN.md), checked on the source, and what a serving process loads.

Every ``import dermascan.X`` / ``from dermascan.X import ...`` in a module counts, lazy ones inside functions
too: a lazy import still runs in the process that reaches it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dermascan"

BASE = {"taxonomy", "config", "errors", "_io", "_html", "__init__", "__version__"}
#: top-level part -> the parts it may import (itself always allowed). Anything not listed may import anything.
ALLOWED: dict[str, set[str]] = {
    "taxonomy": set(),
    "config": set(),
    "errors": set(),
    "_io": set(),
    "_html": {"_io", "__version__"},
    "decision": {"taxonomy"},  # the leaf of the serving path: numpy only
    "data": BASE,
    "models": BASE | {"data"},
    # training reads the pure metrics (specificity at a sensitivity for model selection), nothing else above it
    # training writes the run folder through dermascan.runs' file names
    "training": BASE | {"data", "models", "runs", "evaluation.metrics", "evaluation._validate", "evaluation.intervals"},
    "runs": BASE | {"decision", "data", "models", "training.config"},
    "explain": BASE | {"data", "models"},
    "inference": BASE | {"decision", "data", "models", "explain", "runs"},
    # export.benchmark times the synthetic JPEG of dermascan.testing when given no photo
    # export writes the monitoring reference (training feature quantiles, an embedding sample) into the bundle
    "export": BASE
    | {"decision", "data", "models", "explain", "inference", "runs", "testing.synthetic_jpeg", "monitoring.reference"},
    "evaluation": BASE | {"decision", "data", "models", "training", "runs", "explain", "inference"},
    "store": BASE,
    "scoring": BASE | {"decision", "data", "inference"},
    # serving computes the image features (numpy) stored with each prediction, and reads the monitor's report
    "serving": BASE | {"decision", "inference", "store", "monitoring.features", "monitoring.files"},
    # monitoring reads the store and the pure metrics and intervals; its simulation renders synthetic images
    # and answers them through the Predictor
    "monitoring": BASE
    | {
        "decision",
        "store",
        "inference",
        "data",
        "evaluation.metrics",
        "evaluation.intervals",
        "evaluation.bootstrap",
        "evaluation._validate",
    },
    # active learning trains and evaluates rounds, scores through the Predictor, reads the store's pool; its demo
    # step writes the cost table
    "active_learning": BASE
    | {"decision", "data", "models", "training", "runs", "inference", "evaluation", "store", "cost"},
    "cost": BASE,  # reads the simulation's and the benchmark's JSON files, never their code
    # lifecycle sits on top of training, evaluation, export and the store (DESIGN.md); it never reaches into serving
    "lifecycle": BASE | {"data", "runs", "training", "evaluation", "inference", "export", "store", "monitoring"},
}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "__init__"


def _allowed(importer: str, imported: str) -> bool:
    part = _part(importer)
    target = imported.split(".")
    if len(target) == 1 or _part(imported) == part:
        return True  # `import dermascan` or within the same part
    rules = ALLOWED.get(part)
    if rules is None:
        return True  # cli, demo, testing and the other top-level drivers sit on top of everything
    return target[1] in rules or ".".join(target[1:3]) in rules or ".".join(target[1:4]) in rules


def _imports() -> list[tuple[str, str, int]]:
    found = []
    for path in SRC.rglob("*.py"):
        module = "dermascan." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module.count(".") <= 1:  # `from dermascan.evaluation import metrics` names the module
                    names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [(module, n, node.lineno) for n in names if n.split(".")[0] == "dermascan"]
    return found


def test_imports_flow_one_way() -> None:
    wrong = [f"{m}:{line} imports {n}" for m, n, line in _imports() if not _allowed(m, n)]
    assert not wrong, "imports against the direction of DESIGN.md:\n" + "\n".join(wrong)


def test_the_rule_catches_a_wrong_import() -> None:
    assert not _allowed("dermascan.decision", "dermascan.evaluation.metrics")
    assert not _allowed("dermascan.data.readers", "dermascan.models")
    assert not _allowed("dermascan.inference.predictor", "dermascan.evaluation.calibration")
    assert _allowed("dermascan.evaluation.evaluate", "dermascan.inference.predictor")


def test_a_process_serving_an_onnx_bundle_imports_neither_torch_nor_scipy(tmp_path: Path) -> None:
    from dermascan.testing import random_bundle, synthetic_jpeg

    bundle = random_bundle(tmp_path / "b", "resnet18", 32)
    image = tmp_path / "x.jpg"
    image.write_bytes(synthetic_jpeg(64, 48))
    code = f"""
import json, sys, warnings
warnings.simplefilter("ignore")
from dermascan.inference import Predictor
with Predictor.from_path({str(bundle)!r}, runtime="onnxruntime") as p:
    (r,) = p.predict([{str(image)!r}], heatmap=True)
heavy = [m for m in ("torch", "scipy", "sklearn", "pandas", "lightning", "dermascan.evaluation") if m in sys.modules]
print(json.dumps({{"primary": r.primary, "heavy": heavy}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["primary"] in {"MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"}
    assert result["heavy"] == [], f"a serving process imported {result['heavy']}"


@pytest.mark.parametrize("module", ["dermascan.decision", "dermascan.inference"])
def test_importing_the_serving_modules_stays_light(module: str) -> None:
    code = f"import sys, {module}; print([m for m in ('torch', 'scipy', 'pandas') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
