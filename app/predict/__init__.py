"""POST /predict/<model>: validated single and batch predictions."""

from app.predict.routes import blp

__all__ = ["blp"]
