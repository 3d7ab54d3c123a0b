"""Stage prepare: clean the raw data, write a fixed-seed train/holdout split, and add labelled
live rows (data/feedback) to the train split only, so the holdout stays comparable."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from core.specs import get_spec
from pipeline import data, io, params


def clean(frame, model: str):
    """Drop rows with missing or non-finite values; housing also drops impossible sizes."""
    spec = get_spec(model)
    features = frame[spec.feature_names]
    keep = np.isfinite(features.to_numpy(dtype=float)).all(axis=1)
    for feat in spec.features:
        if feat.minimum is not None:
            keep &= (features[feat.name] >= feat.minimum).to_numpy()
        if feat.maximum is not None:
            keep &= (features[feat.name] <= feat.maximum).to_numpy()
    return frame[keep].reset_index(drop=True)


def read_feedback(model: str) -> pd.DataFrame:
    """Feedback rows of a model, typed like the raw frame (none when the file is missing)."""
    spec = get_spec(model)
    path = io.feedback_file(model)
    if not path.exists():
        return pd.DataFrame(columns=[*spec.feature_names, data.TARGET])
    frame = pd.read_csv(path)
    target = str if spec.task == "classification" else float
    frame = frame.astype({**dict.fromkeys(spec.feature_names, float), data.TARGET: target})
    return frame[[*spec.feature_names, data.TARGET]]


def main(model: str) -> None:
    """Write data/prepared/<model>/{train,holdout}.csv."""
    cfg = params.section("prepare", model)
    frame = clean(data.load(model), model)
    stratify = frame[data.TARGET] if get_spec(model).task == "classification" else None
    # The split depends only on the raw data and the seed: the holdout is the same rows in
    # every run, so a candidate and the champion it must beat are scored on equal terms.
    train, holdout = train_test_split(
        frame,
        test_size=cfg["holdout_fraction"],
        random_state=params.seed(),
        stratify=stratify,
    )
    labelled = read_feedback(model)
    extra = clean(labelled, model)  # the same filter as the raw rows
    if len(extra):
        train = pd.concat([train, extra], ignore_index=True)
    out = io.prepared_dir(model)
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    holdout.to_csv(out / "holdout.csv", index=False)
    print(
        f"prepare {model}: {len(train)} train rows ({len(extra)} from feedback, "
        f"{len(labelled) - len(extra)} feedback rows dropped by cleaning), "
        f"{len(holdout)} holdout rows"
    )


if __name__ == "__main__":
    main(sys.argv[1])
