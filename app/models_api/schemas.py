"""Schemas of the model endpoints."""

from __future__ import annotations

import re

import marshmallow as ma
from marshmallow.validate import Range

from core import comparison
from core.feedback import DEFAULT_WINDOW, MAX_WINDOW
from core.monitor_reports import DRIFT_STATUSES as REPORTED_DRIFT_STATUSES

PENDING = "pending"  # until the periodic monitor has written a first report for the model
DRIFT_STATUSES = (PENDING, *REPORTED_DRIFT_STATUSES)


# ASCII digits only: str.isdigit() also accepts superscripts (int() then raises) and other
# scripts' digits.
VERSION_PATTERN = re.compile(r"0{0,8}[1-9][0-9]{0,8}")


class VersionString(ma.fields.String):
    """A registry version number: "3" or 3 in, "3" out."""

    default_error_messages = {"invalid": 'Must be a positive integer version, e.g. "3".'}

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.make_error("invalid")
        text = str(value)
        # Registry versions are small integers; the bound keeps absurd values out of the store.
        if len(text) > 9 or not VERSION_PATTERN.fullmatch(text):
            raise self.make_error("invalid")
        return str(int(text))


class PromoteSchema(ma.Schema):
    """Body of POST /models/<name>/promote."""

    version = VersionString(
        required=True,
        metadata={"example": "2", "pattern": f"^{VERSION_PATTERN.pattern}$", "maxLength": 9},
    )


class ServedModelSchema(ma.Schema):
    """A served model version as seen by this worker."""

    name = ma.fields.String(metadata={"example": "iris"})
    registered_name = ma.fields.String(metadata={"example": "IrisBestModel"})
    status = ma.fields.String(metadata={"example": "ok"})
    version = ma.fields.String(allow_none=True, metadata={"example": "3"})
    alias = ma.fields.String(metadata={"example": "champion"})
    run_id = ma.fields.String(allow_none=True)
    algorithm = ma.fields.String(allow_none=True, metadata={"example": "logistic_regression"})
    intervals = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": "how the version's conformal prediction intervals were calibrated "
            "(method, n, folds, bins, max_level); null for a version without them"
        },
    )
    runtime = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "what computes its predictions: sklearn, treelite or onnxruntime",
            "example": "onnxruntime",
        },
    )
    runtime_reason = ma.fields.String(
        allow_none=True,
        metadata={"description": "why scikit-learn serves it, when it does"},
    )
    metrics = ma.fields.Dict(metadata={"example": {"accuracy": 0.97}})
    params = ma.fields.Dict()
    features = ma.fields.List(ma.fields.String())
    classes = ma.fields.List(ma.fields.String(), allow_none=True)
    unit = ma.fields.String(allow_none=True)
    data_hash = ma.fields.String(allow_none=True)
    git_commit = ma.fields.String(allow_none=True)
    pipeline_run_id = ma.fields.String(allow_none=True)
    loaded_at = ma.fields.String(allow_none=True, metadata={"example": "2026-01-01T12:00:00Z"})
    last_error = ma.fields.String(allow_none=True)


class ModelsInfoSchema(ma.Schema):
    """GET /models/info."""

    models = ma.fields.List(ma.fields.Nested(ServedModelSchema))


class RegistryVersionSchema(ma.Schema):
    """One registered version."""

    version = ma.fields.String(metadata={"example": "2"})
    aliases = ma.fields.List(ma.fields.String(), metadata={"example": ["champion"]})
    run_id = ma.fields.String(allow_none=True)
    created_at = ma.fields.Integer(allow_none=True, metadata={"description": "epoch ms"})
    algorithm = ma.fields.String(allow_none=True)
    runtime = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "the runtime its validation chose to serve it (sklearn, "
            "treelite or onnxruntime); null for versions registered before compiled inference"
        },
    )
    metrics = ma.fields.Dict()
    rejected_reason = ma.fields.String(allow_none=True)


class ModelDetailSchema(ma.Schema):
    """GET /models/<name>."""

    name = ma.fields.String(metadata={"example": "iris"})
    registered_name = ma.fields.String(metadata={"example": "IrisBestModel"})
    task = ma.fields.String(metadata={"example": "classification"})
    served = ma.fields.Nested(ServedModelSchema, allow_none=True)
    versions = ma.fields.List(ma.fields.Nested(RegistryVersionSchema))


class AliasMoveSchema(ma.Schema):
    """Result of promote / rollback."""

    name = ma.fields.String(metadata={"example": "iris"})
    registered_name = ma.fields.String(metadata={"example": "IrisBestModel"})
    champion = ma.fields.Nested(RegistryVersionSchema)
    message = ma.fields.String()


class PerformanceQuerySchema(ma.Schema):
    """Query of GET /models/<name>/performance."""

    window = ma.fields.Integer(
        load_default=DEFAULT_WINDOW,
        validate=Range(min=1, max=MAX_WINDOW),
        metadata={"description": f"newest labels per version to score (default {DEFAULT_WINDOW})"},
    )


class VersionQualitySchema(ma.Schema):
    """Live quality of one version over its newest labels."""

    version = ma.fields.String(metadata={"example": "3"})
    labelled = ma.fields.Integer(metadata={"description": "labels scored", "example": 120})
    window = ma.fields.Integer(metadata={"example": DEFAULT_WINDOW})
    metrics = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Float(allow_none=True),
        metadata={
            "description": "rmse and mae (regression) or accuracy (classification); "
            "null without labels",
            "example": {"rmse": 0.52, "mae": 0.37},
        },
    )
    first_labelled_at = ma.fields.DateTime(allow_none=True)
    last_labelled_at = ma.fields.DateTime(allow_none=True)


class PerformanceSchema(ma.Schema):
    """GET /models/<name>/performance."""

    model = ma.fields.String(metadata={"example": "housing"})
    registered_name = ma.fields.String(metadata={"example": "CaliforniaHousingBestModel"})
    task = ma.fields.String(metadata={"example": "regression"})
    window = ma.fields.Integer(metadata={"example": DEFAULT_WINDOW})
    served_version = ma.fields.String(
        allow_none=True,
        metadata={"description": "the version this worker serves (null: none loaded)"},
    )
    versions = ma.fields.List(
        ma.fields.Nested(VersionQualitySchema),
        metadata={"description": "versions with labels, most recently labelled first"},
    )


class DriftReportSchema(ma.Schema):
    """GET /models/<name>/drift: the newest input drift check of a model."""

    model = ma.fields.String(metadata={"example": "housing"})
    checked_at = ma.fields.DateTime(allow_none=True, metadata={"description": "null: pending"})
    status = ma.fields.String(
        metadata={
            "enum": list(DRIFT_STATUSES),
            "description": "pending until the monitor has checked the model once",
            "example": "ok",
        }
    )
    version = ma.fields.String(
        allow_none=True, metadata={"description": "reference (champion) version", "example": "3"}
    )
    overall_psi = ma.fields.Float(
        allow_none=True, metadata={"description": "largest feature PSI", "example": 0.04}
    )
    threshold = ma.fields.Float(allow_none=True, metadata={"example": 0.2})
    window_rows = ma.fields.Integer(
        allow_none=True, metadata={"description": "recent logged rows compared", "example": 5000}
    )
    min_rows = ma.fields.Integer(
        allow_none=True, metadata={"description": "rows needed for a verdict", "example": 500}
    )
    features = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Float(allow_none=True),
        metadata={"description": "PSI per input feature", "example": {"MedInc": 0.04}},
    )


class ComparisonSideSchema(ma.Schema):
    """One side of the comparison: a version and how many compared rows it answered."""

    version = ma.fields.String(metadata={"example": "3"})
    served_rows = ma.fields.Integer(
        metadata={
            "description": "compared rows this version answered the client for (the other "
            "scored them in the shadow); absent without a challenger",
            "example": 180,
        }
    )


class AgreementSchema(ma.Schema):
    """Classification: how often the two versions agree on the same rows."""

    rate = ma.fields.Float(
        allow_none=True, metadata={"description": "share of rows with the same label"}
    )
    agreed = ma.fields.Integer(metadata={"description": "rows with the same label"})
    mean_abs_probability_diff = ma.fields.Float(
        allow_none=True,
        metadata={"description": "mean absolute difference of the class probabilities"},
    )


class DifferenceSchema(ma.Schema):
    """Regression: how far the two versions' predictions are on the same rows."""

    mean_abs = ma.fields.Float(
        allow_none=True, metadata={"description": "mean |challenger - champion|"}
    )
    max_abs = ma.fields.Float(
        allow_none=True, metadata={"description": "max |challenger - champion|"}
    )
    mean_signed = ma.fields.Float(
        allow_none=True,
        metadata={"description": "mean challenger - champion (positive: challenger higher)"},
    )


LIVE_METRICS = ma.fields.Dict(
    keys=ma.fields.String(),
    values=ma.fields.Float(allow_none=True),
    metadata={
        "description": "rmse and mae (regression) or accuracy (classification) on the labelled "
        "compared rows; null without labels"
    },
)


class ComparisonQualitySchema(ma.Schema):
    """Both versions scored on the SAME labelled rows."""

    labelled = ma.fields.Integer(metadata={"description": "compared rows with a label"})
    metric = ma.fields.String(metadata={"description": "the metric the verdict compares"})
    min_labels = ma.fields.Integer(metadata={"description": "labels needed for a verdict"})
    min_improvement = ma.fields.Float(
        metadata={"description": "margin by which the better version's metric must win"}
    )
    champion = LIVE_METRICS
    challenger = LIVE_METRICS


class ComparisonSchema(ma.Schema):
    """GET /models/<name>/comparison: champion against challenger on the same live requests."""

    model = ma.fields.String(metadata={"example": "iris"})
    champion = ma.fields.Nested(ComparisonSideSchema, allow_none=True)
    challenger = ma.fields.Nested(
        ComparisonSideSchema, allow_none=True, metadata={"description": "null: no challenger"}
    )
    rows_compared = ma.fields.Integer(
        metadata={"description": "newest rows both versions scored (at most `window`)"}
    )
    window = ma.fields.Integer(metadata={"description": "comparison.<model>.window_rows"})
    agreement = ma.fields.Nested(
        AgreementSchema, metadata={"description": "classification models only"}
    )
    difference = ma.fields.Nested(
        DifferenceSchema, metadata={"description": "regression models only"}
    )
    live_quality = ma.fields.Nested(
        ComparisonQualitySchema, allow_none=True, metadata={"description": "null: no challenger"}
    )
    verdict = ma.fields.String(metadata={"enum": list(comparison.VERDICTS)})
    rule = ma.fields.String(
        metadata={
            "enum": list(comparison.RULES),
            "description": "the rule that decided the verdict",
        }
    )
    reason = ma.fields.String(metadata={"description": "the verdict in words, with its figures"})
