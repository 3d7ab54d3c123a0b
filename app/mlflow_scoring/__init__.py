"""MLflow's scoring protocol (`mlflow models serve`) per model: /mlflow/<name>/invocations, ..."""

from app.mlflow_scoring.routes import blp

__all__ = ["blp"]
