-- The app database (job records, prediction log) is POSTGRES_DB; MLflow gets its own.
CREATE DATABASE mlflow;
