"""The side-by-side ratios of a ``make bench`` run as one picture (``bench/ratios.png``):
a bar per metric and build, the target as a tick, 1.0 (as good as the peer) as a line."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt

Ratios = dict[str, dict[str, float]]
"""Per series (e.g. "compiled"), each metric's ratio: above 1.0 = spoolgear better."""


def draw(ratios: Ratios, targets: dict[str, float], title: str, path: Path) -> None:
    metrics = list(dict.fromkeys(metric for series in ratios.values() for metric in series))
    height = 0.8 / len(ratios)
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(metrics) * len(ratios) + 1.5))
    for index, (series, values) in enumerate(ratios.items()):
        rows = [position + index * height for position in range(len(metrics))]
        bars = axes.barh(
            rows, [values.get(metric, 0.0) for metric in metrics], height, label=series
        )
        axes.bar_label(bars, fmt="%.2fx", padding=3, fontsize=8)
    axes.axvline(1.0, color="grey", linewidth=0.8)
    middle = [position + height * (len(ratios) - 1) / 2 for position in range(len(metrics))]
    for position, metric in zip(middle, metrics, strict=True):
        if metric in targets:
            axes.plot(targets[metric], position, "k|", markersize=18, markeredgewidth=2)
    axes.set_yticks(middle, metrics)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("spoolgear's advantage (log scale; | = target, grey line = as good)")
    axes.set_title(title)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw_systems(figures: dict[str, tuple[float, float]], title: str, path: Path) -> None:
    """Per system, its enqueue p50 in ms and its drain rate, side by side (log scales);
    spoolgear's bars in one colour, the peers' in another."""
    labels = list(figures)
    colours = ["tab:blue" if label.startswith("spoolgear") else "tab:grey" for label in labels]
    figure, (enqueue, drain) = plt.subplots(
        1, 2, figsize=(12, 0.4 * len(labels) + 1.8), sharey=True
    )
    rows = range(len(labels))
    for axes, index, name, fmt in (
        (enqueue, 0, "enqueue p50, ms (lower is better)", "%.2f"),
        (drain, 1, "drain, tasks/s with two workers (higher is better)", "%.0f"),
    ):
        bars = axes.barh(rows, [figures[label][index] for label in labels], color=colours)
        axes.bar_label(bars, fmt=fmt, padding=3, fontsize=8)
        axes.set_xscale("log")
        axes.set_xlabel(name)
    enqueue.set_yticks(list(rows), labels)
    enqueue.invert_yaxis()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
