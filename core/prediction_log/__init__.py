"""The prediction log: one database row per predicted row, written off the request path.

table: the table; statements: the SQL that turns a flush into rows; writer: the buffer the API
records into and its background flusher; queries: what the API, the monitor and retention read
or delete.
"""

from core.prediction_log.queries import prune, recent, recent_inputs
from core.prediction_log.table import prediction_log
from core.prediction_log.writer import PredictionLogWriter

__all__ = ["PredictionLogWriter", "prediction_log", "prune", "recent", "recent_inputs"]
