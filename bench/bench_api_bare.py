"""The benchmark's baselines: bare apps that only parse JSON and call the same pipelines.

    OMP_NUM_THREADS=1 gunicorn -w 2 "bench.bench_api_bare:create_app()"
    OMP_NUM_THREADS=1 uvicorn --workers 2 --factory bench.bench_api_bare:create_fastapi_app
    BARE_COMPILED=1 OMP_NUM_THREADS=1 gunicorn -w 2 "bench.bench_api_bare:create_app()"

Each worker loads the champion of every model from the registry (scikit-learn, as
`registry.load_model` gives it) when it starts, and has no validation, logging, metrics or hot
swap: what the full API is measured against. With BARE_COMPILED=1 it loads the form the API
serves instead (the compiled one where validation proved it, core.compiled.for_serving): the
floor for the API's own request path, with the model's cost the same on both sides.
"""

import os
from typing import Any

import numpy as np

from core import compiled, registry
from core.specs import MODEL_SPECS


def load_champions() -> dict[str, Any]:
    """Every model's champion: its scikit-learn pipeline, or with BARE_COMPILED=1 the form the
    API serves."""
    registry.configure()
    models = {}
    for name, spec in MODEL_SPECS.items():
        info = registry.champion(spec.registered_name)
        if os.environ.get("BARE_COMPILED") == "1":
            pipeline, files = registry.load_model_and_files(info.registered_name, info.version)
            probe = np.asarray([list(spec.example_row().values())], dtype=np.float64)
            serving = compiled.for_serving(spec.task, pipeline, files, info.tags, probe)
            models[name] = serving.model
        else:
            models[name] = registry.load_model(info.registered_name, info.version)
    return models


def predict(models: dict[str, Any], name: str, data: dict[str, Any]) -> dict[str, Any]:
    """What both bare apps answer: the pipeline's predictions for one record or a batch."""
    spec = MODEL_SPECS[name]
    rows = data.get("instances", [data])
    x = np.array([[row[f] for f in spec.feature_names] for row in rows], dtype=float)
    model = models[name]
    if spec.task == "regression":
        return {"predictions": model.predict(x).tolist()}
    proba = model.predict_proba(x)
    labels = model.classes_[proba.argmax(axis=1)].tolist()
    return {"predictions": labels, "probabilities": proba.tolist()}


def create_app():
    """The bare Flask app (gunicorn sync workers, as the API)."""
    from flask import Flask, jsonify, request

    app = Flask(__name__)
    models = load_champions()

    @app.post("/predict/<name>")
    def predict_route(name: str):
        return jsonify(predict(models, name, request.get_json()))

    @app.get("/ready")
    def ready():
        return {"status": "ready"}

    return app


def create_fastapi_app():
    """The bare FastAPI app (uvicorn workers).

    This module has no `from __future__ import annotations`: FastAPI reads the route's
    annotations, and a string "Request" would not resolve to the class imported here.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()
    models = load_champions()

    @app.post("/predict/{name}")
    async def predict_route(name: str, request: Request) -> JSONResponse:
        return JSONResponse(predict(models, name, await request.json()))

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app
