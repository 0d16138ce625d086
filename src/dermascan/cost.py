"""The monthly cost model of the brief (section 4.8), with scenarios, every figure naming its source.

The defaults reproduce the brief's table: edge T4s in 200 clinics $48,000, cloud training (4 A100, 20 h)
$3,200, storage (500K images, 5 TB) $115, MLflow / monitoring $500, labelling (1,000 images at $85)
$85,000: $136,815 a month against 500,000 scans at $4.50 ($2.25M). The brief gives line totals; the unit
prices are derived from them (e.g. $240 per T4 per clinic-month = $48,000 / 200) so a scenario can scale
one driver. Each input is a :class:`Figure` whose ``source`` is ``brief`` (stated or derived from a stated
line), ``measured`` (read from a simulation or benchmark output) or ``assumption`` (ours, changeable in
``costs.yaml``).

Scenarios:

* active learning: labelling cut by the label saving ``dermascan active-learn simulate`` measured (its
  best strategy, with the interval), else by an assumed share (the brief's unmeasured 40-60% claim);
* CPU-only clinics: each clinic's T4 replaced by CPU boxes, as many as its peak load needs at the
  throughput ``dermascan bench`` measured on a CPU runtime, provided its latency fits the 3 s budget;
* more clinics: the brief's projected 3x adoption, edge and storage scaling with clinics and scans.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dermascan import _html, _io
from dermascan.errors import ConfigError

SOURCES = ("brief", "measured", "assumption")


@dataclass(frozen=True)
class Figure:
    """A number and where it comes from."""

    value: float
    source: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"source must be one of {SOURCES}, got {self.source!r}")


@dataclass
class CostInputs:
    """Every input of the cost model (``costs.yaml`` may set any of them by name, as a number).

    Attributes:
        clinics: partner clinics with an edge device.
        t4_clinic_month: dollars per clinic-month for its T4 edge device.
        a100_gpus: cloud training GPUs.
        a100_hours: training hours per month.
        a100_gpu_hour: dollars per A100 GPU-hour.
        images_stored: images in cloud storage.
        storage_tb: terabytes stored.
        storage_tb_month: dollars per TB-month.
        monitoring_month: MLflow and monitoring, dollars per month.
        labels_month: new biopsy-confirmed labels per month.
        label_cost: dollars per label.
        scans_month: scans per month.
        price_scan: revenue per scan.
        latency_budget_s: the clinician's end-to-end budget per image.
        clinic_hours_day: hours a clinic scans per day (the load spreads over them).
        days_month: scanning days per month.
        peak_factor: peak-hour load over the average (bursts of patients).
        cpu_box_month: dollars per CPU inference box per clinic-month (hardware amortised plus power).
        al_saving_share: share of labelling saved by active learning when no simulation is given.
        growth_factor: clinic and scan multiplier of the "more clinics" scenario.
    """

    clinics: Figure = Figure(200, "brief", "200 clinics x T4")
    t4_clinic_month: Figure = Figure(240, "brief", "derived: $48,000 / 200 clinics")
    a100_gpus: Figure = Figure(4, "brief", "4x A100")
    a100_hours: Figure = Figure(20, "brief", "20 hrs/month")
    a100_gpu_hour: Figure = Figure(40, "brief", "derived: $3,200 / (4 GPUs x 20 h)")
    images_stored: Figure = Figure(500_000, "brief", "500K images")
    storage_tb: Figure = Figure(5, "brief", "5TB")
    storage_tb_month: Figure = Figure(23, "brief", "derived: $115 / 5 TB")
    monitoring_month: Figure = Figure(500, "brief", "MLflow / monitoring")
    labels_month: Figure = Figure(1000, "brief", "1000 new images/month")
    label_cost: Figure = Figure(85, "brief", "$85 per image (biopsy confirmation)")
    scans_month: Figure = Figure(500_000, "brief", "500,000 scans/month")
    price_scan: Figure = Figure(4.50, "brief", "$4.50/scan")
    latency_budget_s: Figure = Figure(3.0, "brief", "results within 3 seconds per image")
    clinic_hours_day: Figure = Figure(10, "assumption", "a clinic scans 10 hours a day")
    days_month: Figure = Figure(30, "assumption", "scanning every day of the month")
    peak_factor: Figure = Figure(4, "assumption", "the busiest hour carries 4x the average load")
    cpu_box_month: Figure = Figure(60, "assumption", "a CPU mini-PC: ~$1,200 over 3 years plus power and support")
    al_saving_share: Figure = Figure(0.50, "assumption", "the brief's claimed 40-60% (unmeasured): its midpoint")
    growth_factor: Figure = Figure(3, "brief", "projected 3x expansion in clinic adoption")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> CostInputs:
        """Defaults with the numbers of ``path`` overriding them (their source becomes ``assumption``)."""
        try:
            given = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read the cost config {path}: {e}") from e
        if not isinstance(given, dict):
            raise ConfigError(f"{path}: expected a mapping of input: number, got {type(given).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ConfigError(f"{path}: unknown cost input(s) {unknown}; valid: {sorted(known)}")
        inputs = cls()
        changes = {}
        for name, value in given.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{path}: {name} must be a non-negative number, got {value!r}")
            changes[name] = Figure(float(value), "assumption", f"set in {Path(path).name}")
        return dataclasses.replace(inputs, **changes)


@dataclass(frozen=True)
class Line:
    """One line of a cost table: the amount and how it was computed."""

    component: str
    monthly: float
    source: str
    basis: str


def monthly_lines(i: CostInputs, labels_month: float | None = None, edge: Line | None = None) -> list[Line]:
    """The brief's five monthly lines from ``i`` (optionally another labelling volume or edge line)."""
    labels = i.labels_month.value if labels_month is None else labels_month

    def src(*figs: Figure) -> str:
        kinds = {f.source for f in figs}
        return next(s for s in ("measured", "assumption", "brief") if s in kinds)

    return [
        edge
        or Line(
            f"Edge GPU ({i.clinics.value:,.0f} clinics x T4)",
            i.clinics.value * i.t4_clinic_month.value,
            src(i.clinics, i.t4_clinic_month),
            f"{i.clinics.value:,.0f} x ${i.t4_clinic_month.value:,.0f}",
        ),
        Line(
            f"Cloud training ({i.a100_gpus.value:.0f}x A100, {i.a100_hours.value:.0f} hrs/month)",
            i.a100_gpus.value * i.a100_hours.value * i.a100_gpu_hour.value,
            src(i.a100_gpus, i.a100_hours, i.a100_gpu_hour),
            f"{i.a100_gpus.value:.0f} x {i.a100_hours.value:.0f} h x ${i.a100_gpu_hour.value:,.2f}",
        ),
        Line(
            f"Cloud storage ({i.images_stored.value / 1000:,.0f}K images, {i.storage_tb.value:,.1f} TB)",
            i.storage_tb.value * i.storage_tb_month.value,
            src(i.storage_tb, i.storage_tb_month),
            f"{i.storage_tb.value:,.1f} TB x ${i.storage_tb_month.value:,.2f}",
        ),
        Line("MLflow / monitoring", i.monitoring_month.value, i.monitoring_month.source, "flat"),
        Line(
            f"Data labeling ({labels:,.0f} new images/month)",
            labels * i.label_cost.value,
            "measured" if labels_month is not None else src(i.labels_month, i.label_cost),
            f"{labels:,.0f} x ${i.label_cost.value:,.0f}",
        ),
    ]


def _economics(lines: list[Line], scans: float, price: float) -> dict[str, Any]:
    total = sum(line.monthly for line in lines)
    revenue = scans * price
    return {
        "lines": [dataclasses.asdict(line) for line in lines],
        "total": total,
        "scans": scans,
        "revenue": revenue,
        "cost_per_scan": total / scans if scans else math.nan,
        "margin": revenue - total,
        "margin_share": (revenue - total) / revenue if revenue else math.nan,
    }


# -------------------------------------------------------------------------------------------- scenarios


def read_al_saving(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The measured label saving of a simulation (``simulation.json`` or the folder holding it).

    Returns:
        ``{"strategy", "share", "lo", "hi", "reached", "path"}``: the best strategy's share of acquired labels saved.

    Raises:
        ConfigError: not a simulation output.
    """
    path = Path(path)
    file = path / "simulation.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text())
        head = report["headline"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"{file} is not the output of `dermascan active-learn simulate` ({type(e).__name__}: {e}); pass its --out"
        ) from e
    share = head.get("saving_fraction") or {}
    return {
        "strategy": head.get("strategy"),
        "share": share.get("value"),
        "lo": share.get("lo"),
        "hi": share.get("hi"),
        "reached": head.get("reached", False),
        "path": str(file),
    }


def read_cpu_bench(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The fastest CPU runtime of a ``dermascan bench --out`` report: latency p50/p95 and throughput.

    Raises:
        ConfigError: not a bench report, or no runtime in it measured on the CPU.
    """
    try:
        report = json.loads(Path(path).read_text())
        results = report["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a `dermascan bench --out` report ({type(e).__name__}: {e})") from e
    # devices read "cpu" (torch), "CPUExecutionProvider" (ONNX Runtime) or "CPU" (OpenVINO)
    cpu = [
        r
        for r in results
        if "error" not in r and "cpu" in str(r.get("device", "")).lower() and r.get("throughput_img_s")
    ]
    if not cpu:
        raise ConfigError(f"{path}: no runtime was measured on the CPU; run `dermascan bench` on a CPU machine")
    best = min(cpu, key=lambda r: r["latency_ms"]["total"]["p50"])
    throughput = best["throughput_img_s"]
    per_s = max(throughput.values()) if isinstance(throughput, dict) else float(throughput)
    bundle = report.get("bundle", {})
    return {
        "runtime": best["spec"],
        "p50_ms": best["latency_ms"]["total"]["p50"],
        "p95_ms": best["latency_ms"]["total"]["p95"],
        "images_per_s": float(per_s),
        "model": f"{bundle.get('architecture')} at {bundle.get('input_size')} px ({bundle.get('precision')})",
        "machine": report.get("machine", {}).get("cpu") or report.get("machine", {}).get("processor"),
        "path": str(path),
    }


def cost_model(
    inputs: CostInputs | None = None,
    al_simulation: str | os.PathLike[str] | None = None,
    bench: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The baseline table and the scenarios (JSON-ready)."""
    i = inputs or CostInputs()
    out: dict[str, Any] = {"inputs": {f.name: dataclasses.asdict(getattr(i, f.name)) for f in dataclasses.fields(i)}}
    out["baseline"] = _economics(monthly_lines(i), i.scans_month.value, i.price_scan.value)
    base_total = out["baseline"]["total"]
    scenarios = [_active_learning(i, al_simulation), _cpu_clinics(i, bench), _more_clinics(i)]
    for s in scenarios:
        s["saving_vs_baseline"] = base_total - s["total"] if s.get("total") is not None else None
    out["scenarios"] = scenarios
    return out


def _active_learning(i: CostInputs, simulation: str | os.PathLike[str] | None) -> dict[str, Any]:
    if simulation is not None:
        m = read_al_saving(simulation)
        share = max(0.0, m["share"]) if m["reached"] and m["share"] is not None else 0.0
        interval = ""
        if m["lo"] is not None or m["hi"] is not None:
            interval = f", 95% bootstrap [{_pct(m['lo'])}, {_pct(m['hi'])}]"
        basis = (
            f"measured by `dermascan active-learn simulate` ({m['path']}): best strategy {m['strategy']} saves "
            f"{_pct(m['share'])} of acquired labels{interval}"
            + ("" if m["reached"] else " (it never reached random's figure: no saving)")
        )
        source = "measured"
    else:
        share, source = i.al_saving_share.value, i.al_saving_share.source
        basis = f"assumed share saved {_pct(share)}: {i.al_saving_share.note}; measure it with --al-simulation"
    labels = i.labels_month.value * (1.0 - share)
    econ = _economics(monthly_lines(i, labels_month=labels), i.scans_month.value, i.price_scan.value)
    econ["lines"][-1]["source"] = source
    return {"name": "Active learning", "source": source, "basis": basis, "share_saved": share, **econ}


def _cpu_clinics(i: CostInputs, bench: str | os.PathLike[str] | None) -> dict[str, Any]:
    scans_per_clinic = i.scans_month.value / max(i.clinics.value, 1)
    seconds = i.days_month.value * i.clinic_hours_day.value * 3600.0
    peak = scans_per_clinic / seconds * i.peak_factor.value  # images per second a clinic needs at its peak
    name = "CPU-only clinics instead of T4s"
    if bench is None:
        return {
            "name": name,
            "source": "assumption",
            "total": None,
            "peak_images_per_s": peak,
            "basis": f"needs a measured CPU latency: pass --bench (the JSON of `dermascan bench --out`); a clinic "
            f"needs {peak:.4f} images/s at its peak",
        }
    b = read_cpu_bench(bench)
    fits = b["p95_ms"] / 1000.0 <= i.latency_budget_s.value
    boxes = max(1, math.ceil(peak / b["images_per_s"]))
    edge = Line(
        f"Edge CPU ({i.clinics.value:,.0f} clinics x {boxes} box)",
        i.clinics.value * boxes * i.cpu_box_month.value,
        i.cpu_box_month.source,  # the dollars rest on the box price; the box count is measured
        f"{i.clinics.value:,.0f} x {boxes} box(es) (measured throughput) x ${i.cpu_box_month.value:,.0f} "
        f"({i.cpu_box_month.source}: {i.cpu_box_month.note})",
    )
    econ = _economics(monthly_lines(i, edge=edge), i.scans_month.value, i.price_scan.value)
    basis = (
        f"measured by `dermascan bench` ({b['path']}): {b['runtime']} on {b['model']}, p50 {b['p50_ms']:.0f} ms, "
        f"p95 {b['p95_ms']:.0f} ms, {b['images_per_s']:.1f} images/s per box; a clinic needs {peak:.4f} images/s "
        f"at its peak ({i.peak_factor.value:g}x the average), so {boxes} box each; p95 "
        + ("fits" if fits else "does NOT fit")
        + f" the {i.latency_budget_s.value:g} s budget. The benchmark's "
        "model and machine may not be the production ResNet-50 at 224 px: rerun bench on that bundle."
    )
    return {
        "name": name,
        "source": "measured",
        "basis": basis,
        "fits_latency": fits,
        "boxes_per_clinic": boxes,
        "peak_images_per_s": peak,
        "bench": b,
        **econ,
    }


def _more_clinics(i: CostInputs) -> dict[str, Any]:
    g = i.growth_factor.value
    grown = dataclasses.replace(
        i,
        clinics=Figure(i.clinics.value * g, i.growth_factor.source, "scaled"),
        scans_month=Figure(i.scans_month.value * g, i.growth_factor.source, "scaled"),
        images_stored=Figure(i.images_stored.value * g, i.growth_factor.source, "scaled"),
        storage_tb=Figure(i.storage_tb.value * g, i.growth_factor.source, "scaled"),
    )
    econ = _economics(monthly_lines(grown), grown.scans_month.value, i.price_scan.value)
    basis = (
        f"{g:g}x clinics, scans and stored images ({i.growth_factor.note}, source {i.growth_factor.source}); "
        "training, monitoring and labelling kept as they are (an assumption)"
    )
    return {"name": f"{g:g}x clinics", "source": i.growth_factor.source, "basis": basis, **econ}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


# -------------------------------------------------------------------------------------------- output


def _money(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"${v:,.0f}"


SCENARIO_HEADER = ["Scenario", "Monthly cost", "Cost per scan", "Margin", "Margin %", "Source", "Basis"]


def _summary_rows(model: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, e in [("Baseline (the brief)", model["baseline"])] + [(s["name"], s) for s in model["scenarios"]]:
        if e.get("total") is None:
            rows.append([name, "—", "—", "—", "—", e.get("source", ""), e.get("basis", "")])
            continue
        rows.append(
            [
                name,
                _money(e["total"]),
                f"${e['cost_per_scan']:.4f}",
                _money(e["margin"]),
                f"{e['margin_share']:.1%}",
                e.get("source", "brief"),
                e.get("basis", "the brief's table"),
            ]
        )
    return rows


def to_markdown(model: dict[str, Any]) -> str:
    """The table and scenarios as Markdown."""
    b = model["baseline"]
    lines = ["# DermaScan monthly cost", "", "| Component | Monthly Cost | Source | Basis |", "|---|---:|---|---|"]
    lines += [f"| {x['component']} | {_money(x['monthly'])} | {x['source']} | {x['basis']} |" for x in b["lines"]]
    lines += [f"| **Total** | **{_money(b['total'])}** | | |", ""]
    lines += [
        f"Revenue: {b['scans']:,.0f} scans x ${model['inputs']['price_scan']['value']:.2f} = {_money(b['revenue'])}; "
        f"cost per scan ${b['cost_per_scan']:.4f}; margin {_money(b['margin'])} ({b['margin_share']:.1%}).",
        "",
    ]
    lines += ["## Scenarios", "", "| " + " | ".join(SCENARIO_HEADER) + " |", "|---|---:|---:|---:|---:|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in _summary_rows(model)]
    lines += ["", "## Inputs", "", "| Input | Value | Source | Note |", "|---|---:|---|---|"]
    lines += [f"| {k} | {v['value']:g} | {v['source']} | {v['note']} |" for k, v in model["inputs"].items()]
    return "\n".join(lines) + "\n"


def write_cost_report(
    out: str | os.PathLike[str],
    config: str | os.PathLike[str] | None = None,
    al_simulation: str | os.PathLike[str] | None = None,
    bench: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write ``cost.json``, ``cost.md`` and ``cost.html`` into ``out``; return the model."""
    inputs = CostInputs.from_yaml(config) if config is not None else CostInputs()
    model = cost_model(inputs, al_simulation, bench)
    out = Path(out)
    _io.write_json(out / "cost.json", model)
    _io.write_text(out / "cost.md", to_markdown(model))
    b = model["baseline"]
    sections = [
        _html.Section(
            "Monthly cost (brief section 4.8)",
            _html.table(
                ["Component", "Monthly cost", "Source", "Basis"],
                [[x["component"], _money(x["monthly"]), x["source"], x["basis"]] for x in b["lines"]]
                + [["Total", _money(b["total"]), "", ""]],
            )
            + _html.paragraph(
                f"Revenue {_money(b['revenue'])} a month; cost per scan ${b['cost_per_scan']:.4f}; "
                f"margin {_money(b['margin'])} ({b['margin_share']:.1%})."
            ),
        ),
        _html.Section("Scenarios", _html.table(SCENARIO_HEADER, _summary_rows(model))),
        _html.Section(
            "Inputs",
            _html.table(
                ["Input", "Value", "Source", "Note"],
                [[k, f"{v['value']:g}", v["source"], v["note"]] for k, v in model["inputs"].items()],
            ),
        ),
    ]
    _html.write_page(out / "cost.html", "DermaScan cost model", sections, "every figure: brief, measured or assumption")
    return model


__all__ = [
    "CostInputs",
    "Figure",
    "Line",
    "cost_model",
    "monthly_lines",
    "read_al_saving",
    "read_cpu_bench",
    "to_markdown",
    "write_cost_report",
]
