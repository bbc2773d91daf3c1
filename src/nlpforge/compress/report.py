"""The compression report: one JSON, one Markdown table and one plot for all stages side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlpforge.checkpoint import write_directory_atomically


def markdown_table(report: dict[str, Any]) -> str:
    """Stages as rows; accuracy, latency, throughput and size relative to the first stage (the teacher)."""
    stages = report["stages"]
    reference = stages[0]
    metric = report["metric"]
    lines = [
        f"# Compression report: {report['task']} ({metric})",
        "",
        f"Eval data: `{report['eval']}` ({report['eval_examples']} examples); machine: {report['machine']}.",
        "",
        f"| stage | {metric} | % of teacher | p50 ms (b=1) | p95 ms (b=1) | ex/s (b=32) | speed-up | size MB "
        "| smaller |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stage in stages:
        lines.append(
            f"| {stage['name']} | {stage['metric']:.2f} | {100 * stage['metric'] / reference['metric']:.1f} "
            f"| {stage['latency_ms_batch1']['p50']:.2f} | {stage['latency_ms_batch1']['p95']:.2f} "
            f"| {stage['throughput_batch32']:.1f} "
            f"| {stage['throughput_batch32'] / reference['throughput_batch32']:.2f}x "
            f"| {stage['size_mb']:.1f} | {reference['size_bytes'] / stage['size_bytes']:.2f}x |"
        )
    lines += ["", "Artifacts (each loads with `nlpforge serve` / `nlpforge.artifacts.load_artifact`):", ""]
    lines += [f"- {stage['name']}: `{stage['path']}`" for stage in stages]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Quality vs batch-1 latency; point area proportional to size on disk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = report["stages"]
    largest = max(s["size_bytes"] for s in stages)
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for stage in stages:  # stages cluster at the fast end: name them in a legend, not beside the points
        axes.scatter(stage["latency_ms_batch1"]["p50"], stage["metric"], s=60 + 1500 * stage["size_bytes"] / largest,
                     alpha=0.6, label=f"{stage['name']} ({stage['size_mb']:.0f} MB)")
    axes.legend(fontsize=8, markerscale=0.4, loc="best")
    axes.set_xlabel("latency p50 at batch 1 (ms)")
    axes.set_ylabel(report["metric"])
    axes.set_title(f"nlpforge compress: {report['task']} (point size = size on disk)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    """report.json + report.md + report.png in ``out_dir``, written atomically."""

    def write(tmp: Path) -> None:
        (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(markdown_table(report), encoding="utf-8")
        plot(report, tmp / "report.png")

    write_directory_atomically(out_dir, write, last="report.json")
