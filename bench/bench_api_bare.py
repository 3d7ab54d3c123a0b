"""The benchmark's baseline: a bare Flask route that only parses JSON and predicts.

Run: OMP_NUM_THREADS=1 gunicorn -w 2 "bench.bench_api_bare:create_app()"
It loads each champion once per worker (lazily) and has no validation, logging, metrics or
hot swap, which is what the full API is measured against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Flask, jsonify, request

from core import registry
from core.specs import MODEL_SPECS


def create_app() -> Flask:
    """The bare app."""
    app = Flask(__name__)
    models: dict[str, Any] = {}

    def model_for(name: str) -> Any:
        if name not in models:
            registry.configure()
            info = registry.champion(MODEL_SPECS[name].registered_name)
            models[name] = registry.load_model(info.registered_name, info.version)
        return models[name]

    @app.post("/predict/<name>")
    def predict(name: str):
        spec = MODEL_SPECS[name]
        model = model_for(name)
        data = request.get_json()
        rows = data.get("instances", [data])
        x = np.array([[row[f] for f in spec.feature_names] for row in rows], dtype=float)
        if spec.task == "regression":
            return jsonify({"predictions": model.predict(x).tolist()})
        proba = model.predict_proba(x)
        labels = model.classes_[proba.argmax(axis=1)].tolist()
        return jsonify({"predictions": labels, "probabilities": proba.tolist()})

    @app.get("/ready")
    def ready():
        for name in MODEL_SPECS:
            model_for(name)
        return {"status": "ready"}

    return app
