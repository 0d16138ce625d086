"""The fairness audit's report: the plain-language summary, one plot per attribute and ``fairness.html``.

Words and draws the figures of :mod:`dermascan.evaluation.fairness_stats`; nothing is computed here.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from dermascan import _html
from dermascan.evaluation.fairness_stats import LABELS, display
from dermascan.evaluation.plots import _new_figure, _save

__all__ = ["plot_attribute", "summary", "upper_first", "write_html"]


def _pct(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def _pct_ci(e: Any) -> str:
    return f"{_pct(e.value)} (95% CI {_pct(e.lo)}-{_pct(e.hi)})"


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _gap_change(before: float, after: float | None) -> str:
    """How the per-group thresholds moved the largest detection gap, in words a reader can act on."""
    if after is None:
        return f"turned the largest detection gap on the test set ({before:.0f} points) into an unmeasurable one"
    if round(after) == round(before):
        return f"left the largest detection gap on the test set at {before:.0f} points"
    verb = "narrowed" if after < before else "widened"
    return f"{verb} the largest detection gap on the test set from {before:.0f} to {after:.0f} points"


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def summary(
    overall: dict[str, Any],
    n: int,
    threshold: float,
    attributes: dict[str, dict[str, Any]],
    missing: list[str],
    mitigation: dict[str, Any],
    comparison: dict[str, Any] | None,
    gap_points: float,
    synthetic: bool,
) -> list[str]:
    s = [
        f"On {n} test images ({overall['sensitivity'].n} melanomas), at the locked melanoma threshold of "
        f"{threshold:.3g}, the model finds {_pct_ci(overall['sensitivity'])} of melanomas and correctly clears "
        f"{_pct_ci(overall['specificity'])} of non-melanoma lesions."
    ]
    if "fitzpatrick" in missing:
        s.append(
            "Skin type (Fitzpatrick) is not recorded in these data, so we cannot tell whether the model detects "
            "melanoma as well on darker skin (types IV-VI); this must be checked on data that records skin type "
            "before the model is used for patients with darker skin."
        )
    other_missing = [LABELS.get(a, a) for a in missing if a != "fitzpatrick"]
    if other_missing:
        s.append(f"Not recorded, so not audited: {', '.join(other_missing)}.")
    too_small: list[str] = []
    for attribute, audit in attributes.items():
        label = audit["label"]
        groups = audit["groups"]
        too_small += [f"{display(attribute, g)} ({v['n_melanoma']} melanomas)" for g, v in groups.items()
                      if v["status"] == "too_small"]  # fmt: skip
        best = audit["best_group"]
        if best is None:
            s.append(f"By {label}: too few melanomas in every group to judge.")
            continue
        significant = [g for g in groups if groups[g]["significant"]]
        if not audit["flagged"] and not significant:
            s.append(
                f"By {label}: no group's melanoma detection is more than {gap_points:g} points below the best "
                f"group ({display(attribute, best)}, {_pct(groups[best]['sensitivity'].value)})."
            )
            continue
        best_text = f"{display(attribute, best)} ({_pct(groups[best]['sensitivity'].value)})"
        tested = f"Fisher exact test against the other {label} groups together, Holm-corrected over {audit['n_tested']}"
        for name in significant:
            g = groups[name]
            s.append(
                f"{upper_first(display(attribute, name))}: the model finds {_pct_ci(g['sensitivity'])} of "
                f"melanomas, {g['gap_points']:.0f} points below {best_text} and significantly fewer than the other "
                f"groups together ({_pct(g['rest_sensitivity'])}); this gap is statistically significant "
                f"({tested} groups, adjusted {_p_text(g['p_adjusted'])})."
            )
        weak = [g for g in audit["flagged"] if not groups[g]["significant"]]
        if weak:
            # One sentence for the gaps the numbers cannot confirm: a warning, not a list of alarms.
            listed = ", ".join(
                f"{display(attribute, g)} {_pct(groups[g]['sensitivity'].value)} (adjusted "
                f"{'p n/a' if groups[g]['p_adjusted'] is None else _p_text(groups[g]['p_adjusted'])})"
                for g in weak
            )
            s.append(
                f"By {label}, {len(weak)} group(s) are more than {gap_points:g} points below {best_text}, but none "
                f"finds significantly fewer melanomas than the other groups together ({tested} groups), so treat "
                f"these gaps as a warning: {listed}."
            )
    if too_small:
        s.append(f"Too few cases to judge: {', '.join(too_small)}.")

    if mitigation["status"] == "skipped":
        s.append(f"Mitigation not measured: {mitigation['reason']}")
    else:
        target = _pct(mitigation["target_sensitivity"])
        if mitigation["criterion"] == "lower_ci":
            target = f"{target} (lower 95% bound, as the global threshold)"
        for attribute, m in mitigation["attributes"].items():
            if m["status"] != "done" or not m["before"]["flagged"]:
                continue
            before, after = m["before"]["max_gap_points"], m["after"]["max_gap_points"]
            spec_b, spec_a = m["before"]["overall"]["specificity"], m["after"]["overall"]["specificity"]
            s.append(
                f"Mitigation for {LABELS.get(attribute, attribute)}: a separate threshold per group, chosen on the "
                f"validation set to find {target} of melanomas in each group, {_gap_change(before, after)}"
                + f"; overall specificity went from {_pct(spec_b.value)} to {_pct(spec_a.value)}"
                + (f" ({m['specificity_cost_points']:.1f} points more false alarms among non-melanomas)."
                   if m["specificity_cost_points"] is not None and m["specificity_cost_points"] > 0 else ".")
                + (" Groups too small to fit their own threshold kept the global one: "
                   + ", ".join(display(attribute, g) for g in m["groups_using_default"]) + "."
                   if m["groups_using_default"] else "")
            )  # fmt: skip
        if not any(m["status"] == "done" and m["before"]["flagged"] for m in mitigation["attributes"].values()):
            s.append(
                f"No gap above {gap_points:g} points, so no mitigation is needed; per-group thresholds were still "
                f"measured (see the mitigation table)."
            )
        s.append(
            "Per-group thresholds require the group (e.g. skin type) to be recorded for every patient when the "
            "model is used, and they trade specificity (more referrals) for equal detection."
        )
    if comparison is not None:
        for attribute in attributes:
            parts = []
            for name, model in comparison["models"].items():
                gap = model["attributes"].get(attribute, {}).get("max_gap_points")
                parts.append(f"{name} {'n/a' if gap is None else f'{gap:.0f} points'}")
            s.append(f"Largest {LABELS.get(attribute, attribute)} gap by model: {', '.join(parts)}.")
    s.append(
        "Caveats: significance tests each group against the other groups of its attribute together, Holm-corrected "
        "for the number of groups of that attribute (each attribute is corrected on its own); small groups have "
        "wide intervals and a real gap in a small group may not reach significance; a gap shows where the model "
        "underperforms, not why (the case mix, e.g. earlier or thinner melanomas, can differ between groups)."
    )
    if synthetic:
        s.append(
            "These figures come from synthetic images: they check that the audit works, not how the model "
            "would behave on real patients."
        )
    return s


def plot_attribute(
    attribute: str, audit: dict[str, Any], after: dict[str, Any] | None, gap_points: float, path: Path
) -> Path:
    """Sensitivity and specificity by group with their intervals; after-mitigation points beside them."""
    names = list(audit["groups"])
    x = np.arange(len(names))
    fig = _new_figure(max(4.0, 1.0 + 0.7 * len(names)) * 2, 3.6)
    fig.suptitle(f"Melanoma detection by {LABELS.get(attribute, attribute)}")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("sensitivity", "specificity"), strict=True):
        labelled: set[str] = set()  # one legend entry per series, whichever group is drawn first

        def once(text: str, labelled: set[str] = labelled) -> str | None:
            if text in labelled:
                return None
            labelled.add(text)
            return text

        for i, name in enumerate(names):
            g = audit["groups"][name]
            e = g[metric]
            if math.isnan(e.value):
                continue
            color = "0.6" if g["status"] == "too_small" else ("C3" if g["flag"] and metric == "sensitivity" else "C0")
            ax.errorbar(i - 0.1, e.value, yerr=[[e.value - e.lo], [e.hi - e.value]], fmt="o", color=color,
                        capsize=3, label=once("at the global threshold"))  # fmt: skip
            if after is not None:
                a = after["groups"][name][metric]
                if not math.isnan(a.value):
                    ax.errorbar(i + 0.1, a.value, yerr=[[a.value - a.lo], [a.hi - a.value]], fmt="s", color="C2",
                                capsize=3, label=once("per-group thresholds"))  # fmt: skip
        if metric == "sensitivity" and audit["best_group"] is not None:
            best = audit["groups"][audit["best_group"]]["sensitivity"].value
            ax.axhline(best - gap_points / 100.0, color="C3", ls="--", lw=1, label=f"best - {gap_points:g} points")
        tilt = len(names) > 6  # long lists (body sites) need slanted labels
        ax.set_xticks(x, names, rotation=30 if tilt else 0, ha="right" if tilt else "center")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (grey: too small to judge; red: flagged)" if metric == "sensitivity" else metric,
                     fontsize=8)  # fmt: skip
        ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def _est(d: dict[str, Any] | None) -> str:
    if d is None or d.get("value") is None:
        return "—"
    return f"{d['value']:.3f} ({d['lo']:.3f}-{d['hi']:.3f})"


def _status(g: dict[str, Any]) -> str:
    if g["status"] == "too_small":
        return "too small to judge"
    if g["flag"]:
        return "FLAGGED, significant" if g["significant"] else "flagged, not significant"
    return "significantly below the rest" if g["significant"] else "ok"


def write_html(result: dict[str, Any], path: Path) -> None:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in result["summary"])
    sections = [_html.Section("Summary", f'<div class="note"><ul>{items}</ul></div>')]
    if result["notes"]:
        sections.append(_html.Section("Not audited", "".join(_html.paragraph(n, "flag") for n in result["notes"])))
    for attribute, audit in result["attributes"].items():
        rows = [
            [g, v["n"], v["n_melanoma"], _est(v["sensitivity"]), _est(v["specificity"]), _est(v["auroc"]),
             v["gap_points"], "" if v["rest_sensitivity"] is None else f"{v['rest_sensitivity']:.3f}",
             "" if v["p_adjusted"] is None else f"{v['p_adjusted']:.4f}", _status(v)]
            for g, v in audit["groups"].items()
        ]  # fmt: skip
        body = _html.paragraph(
            f"Best group: {audit['best_group'] or 'none judged'}; rows without a value: {audit['n_unknown']}."
        )
        body += _html.table(["group", "images", "melanomas", "sensitivity", "specificity", "AUROC",
                             "gap (points)", "rest's sensitivity", "p vs rest (Holm)", "status"], rows)  # fmt: skip
        if attribute in result["plots"]:
            body += _html.image(result["plots"][attribute], f"detection by {audit['label']}")
        sections.append(_html.Section(f"By {audit['label']}", body))

    mitigation = result["mitigation"]
    if mitigation["status"] == "skipped":
        sections.append(_html.Section("Mitigation: per-group thresholds", _html.paragraph(mitigation["reason"])))
    else:
        rows = []
        for attribute, m in mitigation["attributes"].items():
            if m["status"] != "done":
                rows.append([LABELS.get(attribute, attribute), m["reason"], "", "", "", "", ""])
                continue
            for g, v in m["after"]["groups"].items():
                before = result["attributes"][attribute]["groups"][g]
                rows.append([LABELS.get(attribute, attribute), g, v["threshold"], _est(before["sensitivity"]),
                             _est(v["sensitivity"]), _est(before["specificity"]), _est(v["specificity"])])  # fmt: skip
        overview = [
            [LABELS.get(a, a), m["before"]["max_gap_points"], m["after"]["max_gap_points"],
             _est(m["before"]["overall"]["specificity"]), _est(m["after"]["overall"]["specificity"]),
             m["specificity_cost_points"]]
            for a, m in mitigation["attributes"].items() if m["status"] == "done"
        ]  # fmt: skip
        body = _html.paragraph(
            f"Thresholds chosen per group on the calibration (validation) set for "
            f"{mitigation['target_sensitivity']:.0%} sensitivity with the global threshold's criterion "
            f"({mitigation['criterion']}); figures measured on the audited (test) set."
        )
        body += _html.table(["attribute", "largest gap before", "after", "specificity before", "after",
                             "specificity cost (points)"], overview)  # fmt: skip
        body += _html.table(["attribute", "group", "threshold", "sensitivity before", "after",
                             "specificity before", "after"], rows)  # fmt: skip
        sections.append(_html.Section("Mitigation: per-group thresholds", body))

    if result["comparison"] is not None:
        models = list(result["comparison"]["models"])
        rows = [[LABELS.get(a, a), *(result["comparison"]["models"][m]["attributes"].get(a, {}).get("max_gap_points")
                                    for m in models)] for a in result["attributes"]]  # fmt: skip
        sections.append(_html.Section("Models compared: largest sensitivity gap (points)",
                                      _html.table(["attribute", *models], rows)))  # fmt: skip
    s = result["settings"]
    sections.append(_html.Section("Method", _html.paragraph(
        f"Sensitivity and specificity carry Wilson intervals, AUROC a stratified bootstrap interval "
        f"({s['n_boot']} resamples). A group is too small to judge below {s['min_group_size']} images or "
        f"{s['min_melanomas']} melanomas. Gap = best group's sensitivity minus the group's, in percentage points; "
        f"flagged above {s['gap_points']:g}. Significance: {s['significance']}.")))  # fmt: skip
    _html.write_page(path, "DermaScan fairness audit", sections,
                     subtitle=f"{result['n']} images, {result['n_melanoma']} melanomas, "
                     f"threshold {result['threshold']:.3g}")  # fmt: skip
