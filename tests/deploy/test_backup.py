"""make backup / make restore round trips: SQLite (online backup API) and PostgreSQL (pg_dump)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid

import psycopg2
import pytest

from core import registry
from core.settings import PROJECT_ROOT

BACKUP = [sys.executable, str(PROJECT_ROOT / "deploy" / "backup.py")]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    res = subprocess.run(BACKUP + args, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_sqlite_round_trip_restores_registry_app_db_and_artifacts(registry_copy, tmp_path):
    state = registry_copy.state_dir
    app_db = state / "app.db"
    with sqlite3.connect(app_db) as conn:
        conn.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, state TEXT)")
        conn.execute("INSERT INTO jobs VALUES ('j1', 'succeeded')")
    artifact = state / "mlartifacts" / "1" / "model.bin"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"weights")
    env = {**registry_copy.env, "DATABASE_URL": f"sqlite:///{app_db}"}
    before = [v.to_dict() for v in registry.list_versions("IrisBestModel")]

    run(["backup", str(tmp_path / "bk")], env)
    # Damage everything: a new version, a lost job record, a lost artifact.
    registry.register(registry.get_version("IrisBestModel", "1").source, "IrisBestModel", {})
    with sqlite3.connect(app_db) as conn:
        conn.execute("DELETE FROM jobs")
    artifact.unlink()

    run(["restore", str(tmp_path / "bk")], env)
    assert [v.to_dict() for v in registry.list_versions("IrisBestModel")] == before
    with sqlite3.connect(app_db) as conn:
        assert conn.execute("SELECT job_id, state FROM jobs").fetchall() == [("j1", "succeeded")]
    assert artifact.read_bytes() == b"weights"


def test_postgresql_round_trip(registry_copy, tmp_path):
    name = f"backup_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(PG_ADMIN)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE predictions (id serial PRIMARY KEY, output float)")
            cur.execute("INSERT INTO predictions (output) VALUES (1.5), (2.5)")
        env = {**registry_copy.env, "DATABASE_URL": url}
        run(["backup", str(tmp_path / "bk")], env)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM predictions")
        run(["restore", str(tmp_path / "bk")], env)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT output FROM predictions ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == [1.5, 2.5]
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_backup_of_a_tracking_server_is_refused_with_a_clear_message(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://mlflow:5000", "STATE_DIR": str(tmp_path)}
    res = subprocess.run(
        [*BACKUP, "backup", str(tmp_path / "bk")], env=env, capture_output=True, text=True
    )
    assert res.returncode == 1
    assert "back up its own database" in res.stderr
