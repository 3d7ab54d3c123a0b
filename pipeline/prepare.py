"""Stage prepare: clean the raw data and write a fixed-seed train/holdout split."""

from __future__ import annotations

import sys

import numpy as np
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


def main(model: str) -> None:
    """Write data/prepared/<model>/{train,holdout}.csv."""
    cfg = params.section("prepare", model)
    frame = clean(data.load(model), model)
    stratify = frame[data.TARGET] if get_spec(model).task == "classification" else None
    train, holdout = train_test_split(
        frame,
        test_size=cfg.get("holdout_fraction", 0.2),
        random_state=params.seed(),
        stratify=stratify,
    )
    out = io.prepared_dir(model)
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    holdout.to_csv(out / "holdout.csv", index=False)
    print(f"prepare {model}: {len(train)} train rows, {len(holdout)} holdout rows")


if __name__ == "__main__":
    main(sys.argv[1])
