"""Markdown pieces the val sweeps share (space_sweep.py, levels_sweep.py): a measure with its interval,
and a paired difference with its verdict."""

from __future__ import annotations

from streamdit.quality import LOWER_IS_BETTER


def cell(report: dict, name: str) -> str:
    """``report[name]`` of a quality report (``quality.quality_report``) with its interval
    ``report[name + "_ci"]`` where there is one, as ``mean [low, high]``; "-" when the report lacks it."""
    value = report.get(name)
    if value is None:
        return "-"
    interval = report.get(f"{name}_ci")
    return f"{value:.3f}" if interval is None else f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def difference_line(name: str, d: dict, a: str, b: str) -> str:
    """One paired difference a - b (an entry ``d`` of ``quality.paired_differences``) with its verdict:
    which is better where the interval excludes 0 (lower is better for ``quality.LOWER_IS_BETTER``),
    "no difference" where it holds 0."""
    if d["low"] <= 0 <= d["high"]:
        verdict = "no difference"
    else:
        a_higher = d["low"] > 0
        verdict = f"{a if a_higher == (name not in LOWER_IS_BETTER) else b} better"
    return f"- {name}: {d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] ({verdict})"
