"""Every project metric, defined once; the names are a contract (README: Monitoring).

The API and the Celery worker import these objects; nothing else defines a metric. They live in
prometheus_client's default registry, so they are multiprocess-safe whenever
PROMETHEUS_MULTIPROC_DIR is set before prometheus_client is first imported (gunicorn.conf.py
does that): each process then writes its samples to mmap files that MultiProcessCollector sums.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Model time for one call, from a single iris row (~0.1 ms) to a 10,000-row tree-model batch.
INFERENCE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
# California median house values are in 100k USD and capped at 5.00001 in the data set.
PREDICTION_VALUE_BUCKETS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 8.0)
# A retrain runs the whole DVC pipeline: tens of seconds to tens of minutes.
RETRAIN_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)

MODEL_PREDICTIONS = Counter(
    "model_predictions",
    "Rows predicted, by model and the version that computed them.",
    ["model", "version"],
)
MODEL_INFERENCE_SECONDS = Histogram(
    "model_inference_seconds",
    "Time spent inside the model's predict call per request (model time only).",
    ["model"],
    buckets=INFERENCE_BUCKETS,
)
MODEL_PREDICTION_VALUE = Histogram(
    "model_prediction_value",
    "Distribution of regression outputs (housing: 100k USD).",
    ["model"],
    buckets=PREDICTION_VALUE_BUCKETS,
)
MODEL_PREDICTED_CLASS = Counter(
    "model_predicted_class",
    "Predicted class labels of classification models.",
    ["model", "class"],
)
# livemax: across live workers a version shows 1 while any worker still serves it, and dead
# workers' files are dropped by mark_process_dead, so the series follow what is really served.
MODEL_INFO = Gauge(
    "model_info",
    "1 for the model version a worker serves, 0 for versions it served before; runtime is what "
    "computes its predictions (sklearn, treelite or onnxruntime).",
    ["model", "version", "algorithm", "runtime"],
    multiprocess_mode="livemax",
)
MODEL_RELOADS = Counter(
    "model_reloads",
    "Attempts to load a new champion version: outcome is success or failure.",
    ["model", "outcome"],
)
# Shadow scoring and canary routing (issue: judging a challenger on live traffic).
MODEL_SHADOW_ROWS = Counter(
    "model_shadow_rows",
    "Rows scored off the request path by the version that did not answer (shadow): outcome is "
    "scored, failed (the shadow version raised or gave non-finite outputs) or dropped (queue "
    "full, or no version to compare with).",
    ["model", "version", "outcome"],
)
MODEL_SHADOW_SECONDS = Histogram(
    "model_shadow_seconds",
    "Model time of one shadow scoring (off the request path).",
    ["model"],
    buckets=INFERENCE_BUCKETS,
)
MODEL_CANARY_SHARE = Gauge(
    "model_canary_share",
    "Share of the model's unpinned traffic a worker routes to the @challenger version.",
    ["model", "version"],
    multiprocess_mode="livemax",
)
RETRAIN_JOBS = Counter(
    "retrain_jobs",
    "Finished retrain jobs by outcome (promoted, rejected, up_to_date, failed).",
    ["model", "outcome"],
)
RETRAIN_DURATION_SECONDS = Histogram(
    "retrain_duration_seconds",
    "Wall time of a retrain job, from start to the promotion decision.",
    ["model"],
    buckets=RETRAIN_BUCKETS,
)
# Worker-side gauges. livesum: a dead pool process's stage disappears with it.
RETRAIN_STAGE = Gauge(
    "retrain_stage",
    "1 for the pipeline stage a running retrain of a model is in (0 when idle).",
    ["model", "stage"],
    multiprocess_mode="livesum",
)
RETRAIN_LAST_SUCCESS = Gauge(
    "retrain_last_success_timestamp_seconds",
    "Unix time when a retrain of the model last succeeded.",
    ["model"],
    multiprocess_mode="max",
)
PREDICTION_LOG_ROWS = Counter(
    "prediction_log_rows",
    "Predicted rows handled by the prediction log: written, or dropped when the buffer is full.",
    ["outcome"],
)
MODEL_FEEDBACK = Counter(
    "model_feedback",
    "Ground-truth labels received through POST /feedback: outcome accepted or duplicate.",
    ["model", "outcome"],
)
# Monitor-side gauges, set by the periodic monitor job in the monitor worker. mostrecent: the
# value of the latest run survives a recycled pool process until the next run replaces it.
MODEL_FEATURE_DRIFT_PSI = Gauge(
    "model_feature_drift_psi",
    "Population Stability Index of each input feature: recent logged inputs vs training data.",
    ["model", "feature"],
    multiprocess_mode="mostrecent",
)
MODEL_DRIFT_SCORE = Gauge(
    "model_drift_score",
    "Overall input drift of a model: the largest feature PSI of the latest drift check.",
    ["model"],
    multiprocess_mode="mostrecent",
)
MODEL_DRIFT_WINDOW_ROWS = Gauge(
    "model_drift_window_rows",
    "Logged input rows the latest drift check compared with the training reference.",
    ["model"],
    multiprocess_mode="mostrecent",
)
MODEL_LIVE_RMSE = Gauge(
    "model_live_rmse",
    "RMSE over the latest labelled predictions of a regression model version.",
    ["model", "version"],
    multiprocess_mode="mostrecent",
)
MODEL_LIVE_MAE = Gauge(
    "model_live_mae",
    "MAE over the latest labelled predictions of a regression model version.",
    ["model", "version"],
    multiprocess_mode="mostrecent",
)
MODEL_LIVE_ACCURACY = Gauge(
    "model_live_accuracy",
    "Accuracy over the latest labelled predictions of a classification model version.",
    ["model", "version"],
    multiprocess_mode="mostrecent",
)
MODEL_LIVE_LABELLED_ROWS = Gauge(
    "model_live_labelled_rows",
    "Labelled predictions behind the live quality gauges of a model version.",
    ["model", "version"],
    multiprocess_mode="mostrecent",
)
MODEL_INTERVAL_COVERAGE = Gauge(
    "model_interval_coverage",
    "Share of the latest labelled predictions of a regression model version whose actual value "
    "lies inside the version's conformal interval at level (nominal coverage: the level).",
    ["model", "version", "level"],
    multiprocess_mode="mostrecent",
)
RETRAIN_AUTO_TRIGGERS = Counter(
    "retrain_auto_triggers",
    "Degradation checks that asked for a retrain, by trigger (drift, performance) and outcome "
    "(submitted, cooldown, busy, failed).",
    ["model", "trigger", "outcome"],
)
MONITOR_RUNS = Counter(
    "monitor_runs",
    "Periodic monitor jobs by task (check, retention) and outcome (success, failure).",
    ["task", "outcome"],
)
MONITOR_LAST_SUCCESS = Gauge(
    "monitor_last_success_timestamp_seconds",
    "Unix time when a periodic monitor task last completed.",
    ["task"],
    multiprocess_mode="max",
)
PREDICTION_LOG_PRUNED = Counter(
    "prediction_log_pruned_rows",
    "Prediction log rows removed by the retention job (older than PREDICTION_LOG_RETENTION_DAYS).",
)
# Champion against challenger on the same requests (core.comparison), set by the monitor check.
MODEL_COMPARISON_ROWS = Gauge(
    "model_comparison_rows",
    "Shadow-scored rows the latest champion/challenger comparison covered (0: no challenger).",
    ["model"],
    multiprocess_mode="mostrecent",
)
MODEL_COMPARISON_AGREEMENT = Gauge(
    "model_comparison_agreement",
    "Share of compared rows where champion and challenger give the same label (classification).",
    ["model"],
    multiprocess_mode="mostrecent",
)
MODEL_COMPARISON_ABS_DIFF = Gauge(
    "model_comparison_abs_diff",
    "Mean absolute difference of champion and challenger outputs on the same rows (regression: "
    "predictions; classification: class probabilities).",
    ["model"],
    multiprocess_mode="mostrecent",
)
MODEL_COMPARISON_LABELLED = Gauge(
    "model_comparison_labelled",
    "Compared rows with a ground-truth label, on which both versions' live quality is scored.",
    ["model"],
    multiprocess_mode="mostrecent",
)
MODEL_COMPARISON_LIVE_METRIC = Gauge(
    "model_comparison_live_metric",
    "Live metric (rmse, mae, accuracy) of the champion or the challenger (alias) on the same "
    "labelled rows.",
    ["model", "alias", "metric"],
    multiprocess_mode="mostrecent",
)
MODEL_COMPARISON_ACTIONS = Counter(
    "model_comparison_actions",
    "What the monitor's comparison rule did to a challenger: promoted or rejected.",
    ["model", "action"],
)

ALL_METRICS = (
    MODEL_PREDICTIONS,
    MODEL_INFERENCE_SECONDS,
    MODEL_PREDICTION_VALUE,
    MODEL_PREDICTED_CLASS,
    MODEL_INFO,
    MODEL_RELOADS,
    MODEL_SHADOW_ROWS,
    MODEL_SHADOW_SECONDS,
    MODEL_CANARY_SHARE,
    RETRAIN_JOBS,
    RETRAIN_DURATION_SECONDS,
    RETRAIN_STAGE,
    RETRAIN_LAST_SUCCESS,
    PREDICTION_LOG_ROWS,
    MODEL_FEEDBACK,
    MODEL_FEATURE_DRIFT_PSI,
    MODEL_DRIFT_SCORE,
    MODEL_DRIFT_WINDOW_ROWS,
    MODEL_LIVE_RMSE,
    MODEL_LIVE_MAE,
    MODEL_LIVE_ACCURACY,
    MODEL_LIVE_LABELLED_ROWS,
    MODEL_INTERVAL_COVERAGE,
    RETRAIN_AUTO_TRIGGERS,
    MONITOR_RUNS,
    MONITOR_LAST_SUCCESS,
    PREDICTION_LOG_PRUNED,
    MODEL_COMPARISON_ROWS,
    MODEL_COMPARISON_AGREEMENT,
    MODEL_COMPARISON_ABS_DIFF,
    MODEL_COMPARISON_LABELLED,
    MODEL_COMPARISON_LIVE_METRIC,
    MODEL_COMPARISON_ACTIONS,
)


def register_into(registry: CollectorRegistry) -> None:
    """Also expose the project metrics through another registry (single-process /metrics)."""
    if registry is REGISTRY:
        return
    for metric in ALL_METRICS:
        registry.register(metric)
