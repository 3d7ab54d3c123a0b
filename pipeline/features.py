"""Stage features: fit the feature transformer that is served inside the model pipeline."""

from __future__ import annotations

import sys

from sklearn.preprocessing import FunctionTransformer, StandardScaler

from core.features import HousingFeatures
from pipeline import io, params


def build(model: str, cfg: dict):
    """The unfitted transformer for a model, from its features params."""
    if model == "housing":
        return HousingFeatures(geo=bool(cfg.get("geo", True)), ratios=bool(cfg.get("ratios", True)))
    return StandardScaler() if cfg.get("scale", True) else FunctionTransformer()


def main(model: str) -> None:
    """Fit on the train split and save models/<model>/features.pkl."""
    cfg = params.section("features", model)
    x_train, _ = io.read_split(model, "train")
    transformer = build(model, cfg).fit(x_train)
    io.save_object(io.model_dir(model) / "features.pkl", transformer)
    width = transformer.transform(x_train[:1]).shape[1]
    print(f"features {model}: {x_train.shape[1]} raw columns -> {width} model inputs")


if __name__ == "__main__":
    main(sys.argv[1])
