"""What is served and what is registered; admin moves of the champion alias."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from app.auth import BEARER_AUTH, admin_required
from app.blueprint import Blueprint
from app.json_body import json_required
from app.models_api import service
from app.models_api.schemas import (
    AliasMoveSchema,
    ComparisonSchema,
    DriftReportSchema,
    ModelDetailSchema,
    ModelsInfoSchema,
    PerformanceQuerySchema,
    PerformanceSchema,
    PromoteSchema,
)
from core.specs import MODEL_SPECS

blp = Blueprint(
    "models", __name__, url_prefix="/models", description="Served and registered models."
)


@blp.route("/info")
class ModelsInfo(MethodView):
    """Every served model."""

    @blp.response(200, ModelsInfoSchema)
    def get(self) -> dict[str, Any]:
        """Served version, run, algorithm, metrics, params, features and load time per model."""
        return {"models": [service.served(spec) for spec in MODEL_SPECS.values()]}


@blp.route("/<string:name>")
class ModelDetail(MethodView):
    """One model: what is served and every registered version."""

    @blp.response(200, ModelDetailSchema)
    @blp.alt_responses(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """The served version and the registry's versions with their aliases, newest first."""
        return service.detail(service.spec_or_404(name))


@blp.route("/<string:name>/promote")
class Promote(MethodView):
    """Make a version the champion."""

    # Outermost last: the token is checked first, then the content type, then the body.
    decorators = [json_required, admin_required]

    @blp.doc(security=[BEARER_AUTH])
    @blp.arguments(PromoteSchema, example={"version": "2"})
    @blp.response(200, AliasMoveSchema)
    @blp.alt_responses(400, 401, 403, 404, 409, 413, 415)
    def post(self, body: dict[str, str], name: str) -> dict[str, Any]:
        """Point @champion at a version (the old champion becomes @previous). Admin only."""
        return service.promote(service.spec_or_404(name), body["version"])


@blp.route("/<string:name>/rollback")
class Rollback(MethodView):
    """Return to the previous champion."""

    decorators = [admin_required]

    @blp.doc(security=[BEARER_AUTH])
    @blp.response(200, AliasMoveSchema)
    @blp.alt_responses(401, 403, 404, 409)
    def post(self, name: str) -> dict[str, Any]:
        """Move @champion back to @previous. Admin only; 409 when there is no previous."""
        return service.rollback(service.spec_or_404(name))


@blp.route("/<string:name>/performance")
class Performance(MethodView):
    """Live quality from ground-truth labels."""

    @blp.arguments(PerformanceQuerySchema, location="query")
    @blp.response(200, PerformanceSchema)
    @blp.alt_responses(404, 503)
    def get(self, query: dict[str, int], name: str) -> dict[str, Any]:
        """Live metrics per version over its newest `window` labels (see POST /feedback).

        Housing: rmse and mae (100k USD); iris: accuracy. Versions are listed most recently
        labelled first; `served_version` is the version this worker serves now.
        """
        return service.performance(service.spec_or_404(name), query["window"])


@blp.route("/<string:name>/drift")
class Drift(MethodView):
    """Input drift of recent predictions against the training data."""

    @blp.response(200, DriftReportSchema)
    @blp.alt_responses(404, 503)
    def get(self, name: str) -> dict[str, Any]:
        """The newest drift check (PSI per feature) written by the periodic monitor.

        `status` is ok, drift (overall PSI at or above the threshold), insufficient_data (too
        few recent rows), no_reference (no training reference for the version), or pending
        before the monitor's first check of the model.
        """
        return service.drift(service.spec_or_404(name))


COMPARISON_EXAMPLES = {
    "classification": {
        "summary": "iris: the challenger is better on the same labelled rows",
        "value": {
            "model": "iris",
            "champion": {"version": "3", "served_rows": 1820},
            "challenger": {"version": "4", "served_rows": 180},
            "rows_compared": 2000,
            "window": 2000,
            "agreement": {"rate": 0.962, "agreed": 1924, "mean_abs_probability_diff": 0.031},
            "live_quality": {
                "labelled": 240,
                "metric": "accuracy",
                "min_labels": 50,
                "min_improvement": 0.02,
                "champion": {"accuracy": 0.925},
                "challenger": {"accuracy": 0.958},
            },
            "verdict": "challenger_better",
            "rule": "min_improvement",
            "reason": "challenger v4 accuracy 0.9583 beats champion v3 (0.9250) by at least "
            "min_improvement 0.02 on the same 240 labelled rows",
        },
    },
    "regression": {
        "summary": "housing: too few labels for a verdict yet",
        "value": {
            "model": "housing",
            "champion": {"version": "7", "served_rows": 5000},
            "challenger": {"version": "8", "served_rows": 0},
            "rows_compared": 5000,
            "window": 5000,
            "difference": {"mean_abs": 0.142, "max_abs": 1.87, "mean_signed": -0.021},
            "live_quality": {
                "labelled": 40,
                "metric": "rmse",
                "min_labels": 100,
                "min_improvement": 0.01,
                "champion": {"rmse": 0.512, "mae": 0.361},
                "challenger": {"rmse": 0.498, "mae": 0.352},
            },
            "verdict": "insufficient_labels",
            "rule": "min_labels",
            "reason": "40 labelled rows scored by both versions; min_labels is 100",
        },
    },
    "no_challenger": {
        "summary": "no @challenger other than the champion",
        "value": {
            "model": "iris",
            "champion": {"version": "3"},
            "challenger": None,
            "rows_compared": 0,
            "window": 2000,
            "live_quality": None,
            "verdict": "no_challenger",
            "rule": "aliases",
            "reason": "no @challenger other than the champion v3",
        },
    },
}


@blp.route("/<string:name>/comparison")
class Comparison(MethodView):
    """Champion against challenger on the same live requests (shadow scoring)."""

    @blp.response(200, ComparisonSchema, examples=COMPARISON_EXAMPLES)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(503, response="SERVICE_UNAVAILABLE", description="Registry or database down.")
    def get(self, name: str) -> dict[str, Any]:
        """@champion against @challenger over the newest rows both scored.

        While @champion answers, a share of requests is also scored by @challenger off the
        request path (with a canary, the other way round for the challenger's share). Over the
        newest `comparison.<model>.window_rows` such rows (params.yaml): how often they agree
        (iris: same label, and mean absolute probability difference) or how far apart they
        are (housing: mean and max absolute difference, mean challenger minus champion); then
        both are scored on the SAME rows that carry a label (POST /feedback): housing rmse and
        mae, iris accuracy.

        `verdict`: `insufficient_labels` below `min_labels` labelled rows; else
        `challenger_better` or `champion_better` when one's metric (housing: lower RMSE; iris:
        higher accuracy) beats the other's by at least `min_improvement`, like the register
        gate; else `no_clear_difference`. `no_challenger` when no @challenger other than the
        champion exists (`no_champion` without a champion). `rule` names the rule that decided.
        """
        return service.compare(service.spec_or_404(name))
