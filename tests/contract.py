"""Names fixed by the contract (DESIGN.md) that several tests check."""

# Metric families every dashboard, alert and scrape may rely on.
CONTRACT_METRICS = (
    "flask_http_request_duration_seconds",
    "flask_http_request_total",
    "model_predictions_total",
    "model_inference_seconds",
    "model_prediction_value",
    "model_predicted_class_total",
    "model_info",
    "model_reloads_total",
    "retrain_jobs_total",
    "retrain_duration_seconds",
)
# The worker's own gauges (issue: monitoring) and Prometheus's target health.
WORKER_METRICS = ("retrain_stage", "retrain_last_success_timestamp_seconds")
