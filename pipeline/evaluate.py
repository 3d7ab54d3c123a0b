"""Stage evaluate: holdout metrics to metrics/<model>.json and PNG plots that open offline.

Besides the point metrics: housing's conformal intervals (conformal.json from train) measured on
the holdout, coverage and mean width per level; iris's probability calibration, the holdout
Brier score next to the out-of-fold one train recorded, and a reliability plot of both."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no network

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import cross_val_score
from threadpoolctl import threadpool_limits

from core.conformal import CONFORMAL_FILE, REPORTED_LEVELS, Intervals, level_name
from core.specs import get_spec
from pipeline import io, params
from pipeline.metrics import brier, holdout_metrics, reliability
from pipeline.train import cv_splitter

# Rows drawn in the intervals plot: enough to see the band, few enough to see each row.
INTERVAL_PLOT_ROWS = 300
INTERVAL_PLOT_LEVEL = 0.9


def regression_plots(y: np.ndarray, pred: np.ndarray, out: Path) -> None:
    """Predicted-vs-actual and residuals scatter plots."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(y, pred, s=3, alpha=0.3)
    lims = [min(y.min(), pred.min()), max(y.max(), pred.max())]
    ax.plot(lims, lims, color="black", linewidth=1)
    ax.set(xlabel="actual (100k USD)", ylabel="predicted (100k USD)", title="Predicted vs actual")
    fig.tight_layout()
    fig.savefig(out / "predicted_vs_actual.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.scatter(pred, y - pred, s=3, alpha=0.3)
    ax.axhline(0, color="black", linewidth=1)
    ax.set(xlabel="predicted (100k USD)", ylabel="residual", title="Residuals")
    fig.tight_layout()
    fig.savefig(out / "residuals.png")
    plt.close(fig)


def confusion_plot(y: np.ndarray, pred: np.ndarray, labels: list[str], out: Path) -> None:
    """Confusion matrix heat map."""
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ConfusionMatrixDisplay.from_predictions(y, pred, labels=labels, ax=ax, colorbar=False)
    ax.set_title("Confusion matrix (holdout)")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png")
    plt.close(fig)


def interval_metrics(intervals: Intervals, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Holdout coverage and mean interval width at each reported level."""
    out = {}
    for level in REPORTED_LEVELS:
        lower, upper = intervals.bounds(pred, level)
        name = level_name(level)
        out[f"coverage_{name}"] = float(np.mean((y >= lower) & (y <= upper)))
        out[f"interval_width_{name}"] = float(np.mean(upper - lower))
    return out


def intervals_plot(
    intervals: Intervals, y: np.ndarray, pred: np.ndarray, seed: int, out: Path
) -> None:
    """Holdout rows (a fixed sample) with their 90% intervals, and coverage against nominal."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    pick = np.random.default_rng(seed).choice(len(y), min(INTERVAL_PLOT_ROWS, len(y)), False)
    order = pick[np.argsort(pred[pick], kind="stable")]
    lower, upper = intervals.bounds(pred[order], INTERVAL_PLOT_LEVEL)
    rank = np.arange(len(order))
    inside = (y[order] >= lower) & (y[order] <= upper)
    left.fill_between(
        rank, lower, upper, color="tab:blue", alpha=0.2, step="mid", label="90% interval"
    )
    left.plot(rank, pred[order], color="tab:blue", linewidth=1, label="predicted")
    left.scatter(rank[inside], y[order][inside], s=6, color="black", label="actual, inside")
    left.scatter(rank[~inside], y[order][~inside], s=8, color="tab:red", label="actual, outside")
    left.set(
        xlabel=f"{len(order)} holdout rows, by prediction",
        ylabel="100k USD",
        title="Conformal intervals (holdout sample)",
    )
    left.legend(loc="upper left", fontsize=8)

    levels = np.linspace(0.5, min(0.99, intervals.max_level), 50)
    empirical = [float(intervals.covered(pred, y, level).mean()) for level in levels]
    right.plot(levels, levels, color="black", linewidth=1, label="nominal")
    right.plot(levels, empirical, color="tab:blue", label="holdout coverage")
    right.set(xlabel="nominal level", ylabel="coverage", title=intervals.method)
    right.title.set_fontsize(8)
    right.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "intervals.png")
    plt.close(fig)


def reliability_plot(holdout: dict, oof: dict, out: Path) -> None:
    """Top-class confidence against accuracy: holdout rows and the out-of-fold training rows."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], color="black", linewidth=1, label="perfectly calibrated")
    for name, summary, marker in (("out-of-fold (train)", oof, "o"), ("holdout", holdout, "s")):
        bins = summary["bins"]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker=marker,
            label=f"{name}, ECE {summary['expected_calibration_error']:.3f}",
        )
    ax.set(
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        xlabel="top-class probability",
        ylabel="accuracy",
        title="Reliability of the predicted probabilities",
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reliability.png")
    plt.close(fig)


def main(model: str) -> None:
    """Write metrics/<model>.json and plots/<model>/*.png."""
    cfg = params.section("evaluate", model)
    spec = get_spec(model)
    estimator = io.load_object(io.model_dir(model) / "model.pkl")
    x, y = io.read_split(model, "holdout")
    metrics = holdout_metrics(model, estimator, x, y)
    pred = estimator.predict(x)

    out = io.plots_dir(model)
    out.mkdir(parents=True, exist_ok=True)
    conformal = io.read_json(io.model_dir(model) / CONFORMAL_FILE)
    if spec.task == "regression":
        regression_plots(y, pred, out)
        intervals = Intervals.from_json(conformal)
        metrics.update(interval_metrics(intervals, y, pred))
        intervals_plot(intervals, y, pred, params.seed(), out)
    else:
        x_train, y_train = io.read_split(model, "train")
        folds = cfg["cv_folds"]
        with threadpool_limits(limits=1):  # as in train: the figures never depend on cores
            scores = cross_val_score(
                estimator, x_train, y_train, cv=cv_splitter(spec.task, folds, params.seed())
            )
        metrics[f"cv{folds}_accuracy"] = float(scores.mean())
        confusion_plot(y, pred, list(spec.classes), out)
        classes = [str(c) for c in estimator.classes_]
        proba = estimator.predict_proba(x)
        metrics["brier"] = brier(y, proba, classes)
        metrics["cv_brier"] = float(conformal["brier"])  # out of fold, on the training rows
        reliability_plot(reliability(y, proba, classes), conformal["reliability"], out)
    metrics["holdout_rows"] = len(y)
    io.write_json(io.metrics_file(model), metrics)
    print(f"evaluate {model}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main(sys.argv[1])
