"""Names fixed by the contract (README: Monitoring) that several tests check."""

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
# The monitor worker's gauges and counters (issue: performance monitoring) and the API's
# feedback counter.
MONITOR_METRICS = (
    "model_feedback_total",
    "model_feature_drift_psi",
    "model_drift_score",
    "model_drift_window_rows",
    "model_live_rmse",
    "model_live_mae",
    "model_live_accuracy",
    "model_live_labelled_rows",
    "retrain_auto_triggers_total",
    "monitor_runs_total",
    "monitor_last_success_timestamp_seconds",
    "prediction_log_pruned_rows_total",
    # Champion against challenger (issue: judging a challenger on live traffic).
    "model_comparison_rows",
    "model_comparison_agreement",
    "model_comparison_abs_diff",
    "model_comparison_labelled",
    "model_comparison_live_metric",
    "model_comparison_actions_total",
)
