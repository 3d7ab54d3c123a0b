"""Stage evaluate: holdout metrics to metrics/<model>.json and PNG plots that open offline."""

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

from core.specs import get_spec
from pipeline import io, params
from pipeline.metrics import holdout_metrics
from pipeline.train import cv_splitter


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
    if spec.task == "regression":
        regression_plots(y, pred, out)
    else:
        x_train, y_train = io.read_split(model, "train")
        folds = cfg["cv_folds"]
        with threadpool_limits(limits=1):  # as in train: the figures never depend on cores
            scores = cross_val_score(
                estimator, x_train, y_train, cv=cv_splitter(spec.task, folds, params.seed())
            )
        metrics[f"cv{folds}_accuracy"] = float(scores.mean())
        confusion_plot(y, pred, list(spec.classes), out)
    metrics["holdout_rows"] = len(y)
    io.write_json(io.metrics_file(model), metrics)
    print(f"evaluate {model}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main(sys.argv[1])
