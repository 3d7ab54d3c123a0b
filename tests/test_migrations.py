"""Schema migrations of the app database (core/migrations, core.db.migrate) and of MLflow's store
(`python -m pipeline.cli migrate`, what the init role and the launcher run), on real SQLite files
and throwaway PostgreSQL databases.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic import command
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine, make_url

from core import db, jobs, migrations, monitor_reports
from core.prediction_log import shadow
from core.settings import PROJECT_ROOT
from tests.api.conftest import pg_admin_url
from tests.conftest import IN_CI
from tests.procs import wait_until

# -- the schema as the releases before migrations created it ---------------------------------------
# A copy of their table definitions and of their create-on-start code (core/db.py create_tables),
# kept apart from the baseline revision so that each checks the other.

LEGACY = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
LEGACY_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
LEGACY_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STAMP = sa.DateTime(timezone=True)

LEGACY_JOBS = sa.Table(
    "retrain_jobs",
    LEGACY,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("model", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(64)),
    sa.Column("force", sa.Boolean, nullable=False, default=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("submitted_at", STAMP, nullable=False),
    sa.Column("started_at", STAMP),
    sa.Column("finished_at", STAMP),
    sa.Column("updated_at", STAMP, nullable=False),
    sa.Column("heartbeat_at", STAMP),
    sa.Column("error", sa.Text),
    sa.Column("result", LEGACY_JSON),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker", sa.String(255)),
    sa.Column("worker_pid", sa.Integer),
    sa.Index(None, "submitted_at"),
    sa.Index(None, "state"),
)
LEGACY_LOCKS = sa.Table(
    "retrain_locks",
    LEGACY,
    sa.Column("model", sa.String(32), primary_key=True),
    sa.Column(
        "job_id",
        sa.String(36),
        sa.ForeignKey("retrain_jobs.job_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("locked_at", STAMP, nullable=False),
)
LEGACY_LOG = sa.Table(
    "prediction_log",
    LEGACY,
    sa.Column("id", LEGACY_ID, primary_key=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("inputs", LEGACY_JSON, nullable=False),
    sa.Column("output", LEGACY_JSON, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("created_at", STAMP, nullable=False),
    sa.Index(None, "model", "id"),
    sa.Index(None, "request_id", "row_index"),
)
LEGACY_FEEDBACK = sa.Table(
    "prediction_feedback",
    LEGACY,
    sa.Column("id", LEGACY_ID, primary_key=True),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("inputs", LEGACY_JSON, nullable=False),
    sa.Column("prediction", LEGACY_JSON, nullable=False),
    sa.Column("actual", LEGACY_JSON, nullable=False),
    sa.Column("predicted_at", STAMP, nullable=False),
    sa.Column("created_at", STAMP, nullable=False),
    sa.UniqueConstraint("request_id", "row_index"),
    sa.Index(None, "model", "version", "id"),
)
LEGACY_REPORTS = sa.Table(
    "monitor_reports",
    LEGACY,
    sa.Column("id", LEGACY_ID, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("created_at", STAMP, nullable=False),
    sa.Column("payload", LEGACY_JSON, nullable=False),
    sa.Index(None, "kind", "model", "id"),
)


def legacy_create_tables(engine: Engine, metadata: sa.MetaData = LEGACY) -> None:
    """What every process ran at start before migrations existed."""
    metadata.create_all(engine, checkfirst=True)
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(engine, checkfirst=True)


T0 = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
LEGACY_ROWS = {
    LEGACY_JOBS: [
        {
            "job_id": "a" * 32,
            "model": "housing",
            "state": "succeeded",
            "stage": "done",
            "force": True,
            "trigger": "api",
            "reason": "weekly",
            "submitted_at": T0,
            "started_at": T0,
            "finished_at": T0,
            "updated_at": T0,
            "heartbeat_at": T0,
            "error": None,
            "result": {"housing": {"candidate_version": "2", "promoted": True, "metrics": {}}},
            "attempts": 1,
            "worker": "retrain@host",
            "worker_pid": 4242,
        },
        {
            "job_id": "b" * 32,
            "model": "iris",
            "state": "queued",
            "stage": None,
            "force": False,
            "trigger": "drift",
            "reason": None,
            "submitted_at": T0,
            "started_at": None,
            "finished_at": None,
            "updated_at": T0,
            "heartbeat_at": None,
            "error": None,
            "result": None,
            "attempts": 0,
            "worker": None,
            "worker_pid": None,
        },
    ],
    LEGACY_LOCKS: [{"model": "iris", "job_id": "b" * 32, "locked_at": T0}],
    LEGACY_LOG: [
        {
            "request_id": "req-1",
            "model": "iris",
            "version": "1",
            "row_index": i,
            "inputs": {"sepal_length": 5.1 + i, "petal_width": 0.2},
            "output": {"label": "setosa", "probabilities": {"setosa": 0.97}},
            "latency_ms": 1.5,
            "created_at": T0,
        }
        for i in range(3)
    ],
    LEGACY_FEEDBACK: [
        {
            "request_id": "req-1",
            "row_index": 0,
            "model": "iris",
            "version": "1",
            "inputs": {"sepal_length": 5.1, "petal_width": 0.2},
            "prediction": {"label": "setosa"},
            "actual": "setosa",
            "predicted_at": T0,
            "created_at": T0,
        }
    ],
    LEGACY_REPORTS: [
        {"kind": "drift", "model": "iris", "created_at": T0, "payload": {"status": "ok"}}
    ],
}


def insert_legacy_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        for table, rows in LEGACY_ROWS.items():
            conn.execute(sa.insert(table), rows)


def table_rows(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every legacy table, as the database hands it back."""
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
            for t in LEGACY.sorted_tables
        }


# -- databases -------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """An empty SQLite file."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """A throwaway database on the local PostgreSQL server (dropped afterwards)."""
    admin_url = pg_admin_url()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"test_migrations_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if IN_CI:
            raise AssertionError(f"PostgreSQL at {admin_url} is required in CI: {exc}") from exc
        pytest.skip(f"no PostgreSQL at {admin_url}: {exc}")
    engine = db.make_engine(make_url(admin_url).set(database=name).render_as_string(False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """An empty app database on each supported backend."""
    return request.getfixturevalue(f"{request.param}_engine")


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def differences(engine: Engine, metadata: sa.MetaData | None = None) -> list:
    """What autogenerate finds between the database and the tables core declares."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": migrations.VERSION_TABLE}
        )
        return compare_metadata(context, metadata or migrations.target_metadata())


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return migrations.current(conn)


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


# -- the app database ------------------------------------------------------------------------------


def test_an_empty_database_upgrades_to_exactly_the_declared_schema(engine):
    assert revision_of(engine) is None
    assert db.migrate(engine) == migrations.head()
    assert revision_of(engine) == migrations.head()
    declared = migrations.target_metadata()
    assert table_names(engine) == set(declared.tables) | {migrations.VERSION_TABLE}
    assert differences(engine) == []
    # The comparison sees a difference when there is one: a column the database lacks.
    extra = sa.MetaData()
    for table in declared.sorted_tables:
        table.to_metadata(extra)
    extra.tables["prediction_log"].append_column(sa.Column("compiled", sa.Integer))
    found = differences(engine, extra)
    assert [d[0] for d in found] == ["add_column"] and found[0][3].name == "compiled", found


def test_a_database_the_releases_before_migrations_created_is_adopted_with_its_rows(engine):
    legacy_create_tables(engine)
    insert_legacy_rows(engine)
    before = table_rows(engine)

    assert db.migrate(engine) == migrations.head()

    assert table_rows(engine) == before
    assert differences(engine) == []
    # The code of today reads them, and their constraints still hold: the legacy queued iris
    # job keeps its single-flight lock.
    old = jobs.get(engine, "a" * 32)
    assert old.state == "succeeded" and old.submitted_at == T0 and old.worker_pid == 4242
    assert old.result == LEGACY_ROWS[LEGACY_JOBS][0]["result"]
    with pytest.raises(jobs.JobConflict) as conflict:
        jobs.submit(engine, "iris")
    assert conflict.value.job.job_id == "b" * 32
    assert monitor_reports.latest(engine, "drift", "iris") == {"status": "ok", "created_at": T0}
    assert jobs.submit(engine, "housing").state == jobs.QUEUED


def test_a_database_of_an_older_release_gets_the_tables_and_indexes_it_lacks(engine):
    older = sa.MetaData()
    for table in LEGACY.sorted_tables:
        if table is not LEGACY_FEEDBACK:
            table.to_metadata(older)
    legacy_create_tables(engine, older)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_prediction_log_request_id_row_index"))
        conn.execute(sa.insert(older.tables["prediction_log"]), LEGACY_ROWS[LEGACY_LOG])
    missing = sorted((d[0], d[1].name) for d in differences(engine))
    assert missing == [
        ("add_index", "ix_prediction_feedback_model_version_id"),
        ("add_index", "ix_prediction_log_request_id_row_index"),
        # Revision 0002's, which no release before migrations had.
        ("add_index", "ix_prediction_shadow_model_id"),
        ("add_index", "ix_prediction_shadow_request_id_row_index"),
        ("add_table", "prediction_feedback"),
        ("add_table", "prediction_shadow"),
    ], missing

    assert db.migrate(engine) == migrations.head()

    assert differences(engine) == []
    assert len(table_rows(engine)["prediction_log"]) == len(LEGACY_ROWS[LEGACY_LOG])


def test_a_database_with_other_tables_of_those_names_is_refused_unchanged(engine):
    legacy_create_tables(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE retrain_jobs ADD COLUMN owner VARCHAR(20)"))
    with pytest.raises(db.SchemaError, match="cannot be adopted") as refused:
        db.migrate(engine)
    assert "owner" in str(refused.value) and "retrain_jobs" in str(refused.value)
    assert revision_of(engine) is None
    columns = {c["name"] for c in sa.inspect(engine).get_columns("retrain_jobs")}
    assert "owner" in columns


def test_migrating_twice_changes_nothing(engine):
    assert db.migrate(engine) == migrations.head()
    insert_legacy_rows(engine)
    before = table_rows(engine)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert db.migrate(engine) == migrations.head()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    writes = [s for s in statements if s.split(None, 1)[0].upper() not in ("SELECT", "PRAGMA")]
    assert statements and writes == [], writes
    assert table_rows(engine) == before
    with engine.connect() as conn:
        versions = conn.execute(sa.text(f"SELECT * FROM {migrations.VERSION_TABLE}")).all()
    assert versions == [(migrations.head(),)]


def test_a_database_a_newer_release_migrated_is_refused(engine):
    db.migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(db.SchemaError, match="revision 9999, which this release does not know"):
        db.migrate(engine)


RACER = """
import os, sys, time
from pathlib import Path
from core import db, migrations  # imported before the start signal: only migrate() races
Path(os.environ["READY"]).touch()
end = time.monotonic() + 120
while not Path(os.environ["GO"]).exists():
    if time.monotonic() > end:
        sys.exit("no start signal")
    time.sleep(0.005)
print(db.migrate(os.environ["DATABASE_URL"]))
"""


def test_processes_starting_together_on_a_fresh_database_all_get_the_schema(engine, tmp_path):
    go = tmp_path / "go"
    procs = []
    for n in range(4):
        env = {
            **os.environ,
            "DATABASE_URL": url_of(engine),
            "READY": str(tmp_path / f"ready-{n}"),
            "GO": str(go),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RACER],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        wait_until(
            lambda: all((tmp_path / f"ready-{n}").exists() for n in range(4)),
            120,
            "four migrating processes to start",
        )
        go.touch()
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == migrations.head()
    assert differences(engine) == []


def test_a_revision_that_copies_a_table_keeps_the_rows_that_reference_it(
    sqlite_engine, tmp_path, monkeypatch
):
    """SQLite alters a table by copying it; dropping the old copy must not cascade into the
    single-flight locks (foreign keys are off while revisions run)."""
    db.migrate(sqlite_engine)
    job = jobs.submit(sqlite_engine, "iris")
    scripts = tmp_path / "migrations"
    subprocess.run(["cp", "-r", str(migrations.MIGRATIONS_DIR), str(scripts)], check=True)
    previous = migrations.head()
    (scripts / "versions" / "9999_rebuild_jobs.py").write_text(
        f'''"""Copy retrain_jobs, as SQLite's ALTER of most things does."""
from alembic import op

revision = "9999"
down_revision = "{previous}"


def upgrade() -> None:
    with op.batch_alter_table("retrain_jobs", recreate="always"):
        pass
'''
    )
    monkeypatch.setattr(migrations, "MIGRATIONS_DIR", scripts)

    assert db.migrate(sqlite_engine) == "9999"

    with pytest.raises(jobs.JobConflict) as conflict:
        jobs.submit(sqlite_engine, "iris")
    assert conflict.value.job.job_id == job.job_id
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again


def test_autogenerate_writes_the_json_columns_as_the_tables_declare_them(sqlite_engine):
    db.migrate(sqlite_engine)
    wanted = sa.MetaData()
    for table in migrations.target_metadata().sorted_tables:
        table.to_metadata(wanted)
    wanted.tables["prediction_log"].append_column(sa.Column("extra", db.JSON_TYPE))
    with sqlite_engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": migrations.VERSION_TABLE,
                "render_item": migrations.render_item,
                "target_metadata": wanted,
            },
        )
        script = produce_migrations(context, wanted)
        code = render_python_code(script.upgrade_ops, render_item=migrations.render_item)
    assert 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")' in code, code
    assert "Text()" not in code, code


def upgrade_to(engine: Engine, revision: str) -> None:
    """Bring the app database to one revision (not the newest), as an older release left it."""
    with db.schema_connection(engine) as conn:
        command.upgrade(migrations.config(conn), revision)


SHADOW_ROW = {
    "request_id": "req-1",
    "row_index": 0,
    "model": "iris",
    "served": "champion",
    "champion_version": "1",
    "champion_output": {"label": "setosa", "probabilities": {"setosa": 0.97}},
    "challenger_version": "2",
    "challenger_output": {"label": "versicolor", "probabilities": {"setosa": 0.4}},
    "shadow_ms": 0.8,
    "created_at": T0,
}


def test_a_database_at_the_baseline_gets_the_shadow_table_and_keeps_its_rows(engine):
    upgrade_to(engine, "0001")
    assert revision_of(engine) == "0001"
    assert "prediction_shadow" not in table_names(engine)
    insert_legacy_rows(engine)
    before = table_rows(engine)

    assert db.migrate(engine) == migrations.head() == "0002"

    assert table_rows(engine) == before
    assert "prediction_shadow" in migrations.target_metadata().tables
    assert differences(engine) == []
    indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("prediction_shadow")}
    assert indexes == {
        "ix_prediction_shadow_model_id",
        "ix_prediction_shadow_request_id_row_index",
    }
    # The code of today writes and reads it, joined with the baseline's labels (req-1, row 0).
    shadow.record(engine, [SHADOW_ROW])
    (row,) = shadow.window(engine, "iris", "1", "2", 10)
    assert row["challenger_output"] == SHADOW_ROW["challenger_output"]
    assert row["served"] == "champion" and row["actual"] == "setosa"


def test_the_shadow_revision_downgrades_to_the_baseline(engine):
    db.migrate(engine)
    insert_legacy_rows(engine)
    shadow.record(engine, [SHADOW_ROW])
    before = table_rows(engine)

    with db.schema_connection(engine) as conn:
        command.downgrade(migrations.config(conn), "0001")

    assert revision_of(engine) == "0001"
    assert "prediction_shadow" not in table_names(engine)
    assert table_rows(engine) == before


# -- MLflow's store and the roles that migrate -----------------------------------------------------

# MLflow's own revisions, package data of mlflow.store (found without importing mlflow).
MLFLOW_MIGRATIONS = (
    Path(importlib.util.find_spec("mlflow").origin).parent / "store" / "db_migrations"
)
# An MLflow 2.14 schema ("add trace tables"): dozens of MLflow's revisions behind its newest.
OLD_MLFLOW_REVISION = "867495a8f9d4"


def mlflow_head() -> str:
    return ScriptDirectory(str(MLFLOW_MIGRATIONS)).get_current_head()


def old_mlflow_store(url: str) -> None:
    """An MLflow store as an older MLflow left it: its first tables, its revisions up to one."""
    # MLflow's schema before its first revision: an internal module, so an MLflow without it
    # fails this test loudly rather than skipping the upgrade it proves.
    from mlflow.store.tracking.dbmodels.initial_models import Base

    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    cfg = Config(str(MLFLOW_MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MLFLOW_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, OLD_MLFLOW_REVISION)


def mlflow_revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def run_migrate(env: dict[str, str]) -> str:
    """`python -m pipeline.cli migrate`, as deploy/entrypoint.sh and deploy/stack.sh run it."""
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "migrate"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_migrate_creates_both_stores_of_a_fresh_native_setup(tmp_path):
    state = tmp_path / "state"
    out = run_migrate({"STATE_DIR": str(state), "MLFLOW_TRACKING_URI": "", "DATABASE_URL": ""})
    assert f"schema revision {migrations.head()}" in out
    assert mlflow_revision(f"sqlite:///{state / 'mlflow.db'}") == mlflow_head()
    app = db.make_engine(f"sqlite:///{state / 'app.db'}")
    try:
        assert revision_of(app) == migrations.head() and differences(app) == []
    finally:
        app.dispose()


def test_migrate_upgrades_an_old_mlflow_store_and_a_pre_migrations_app_database(tmp_path):
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old_mlflow_store(store)
    assert mlflow_revision(store) == OLD_MLFLOW_REVISION != mlflow_head()
    app = db.make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        legacy_create_tables(app)
        insert_legacy_rows(app)
        before = table_rows(app)
        # As compose's migrate service has it: MLflow's database in MLFLOW_BACKEND_STORE_URI,
        # the tracking URI a server (not running: migrate must not need it).
        run_migrate(
            {
                "MLFLOW_BACKEND_STORE_URI": store,
                "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
                "DATABASE_URL": url_of(app),
                "STATE_DIR": str(tmp_path / "state"),
            }
        )
        assert table_rows(app) == before and differences(app) == []
    finally:
        app.dispose()
    assert mlflow_revision(store) == mlflow_head()
    assert [e.name for e in MlflowClient(tracking_uri=store).search_experiments()] == ["Default"]


def test_the_roles_migrate_before_anything_uses_the_databases():
    entrypoint = (PROJECT_ROOT / "deploy" / "entrypoint.sh").read_text()
    init = entrypoint.split("\n  init)\n", 1)[1].split(";;", 1)[0]
    assert init.index("python -m pipeline.cli migrate") < init.index("pipeline.cli train")
    assert "exec python -m pipeline.cli migrate" in entrypoint.split("\n  migrate)\n", 1)[1]
    stack = (PROJECT_ROOT / "deploy" / "stack.sh").read_text()
    assert stack.index("python -m pipeline.cli migrate") < stack.index("supervisord --nodaemon")
    services = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    # The URL with its password reaches the process through its environment only.
    assert migrate["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    assert (
        services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
        == (migrate["environment"]["MLFLOW_BACKEND_STORE_URI"])
    )
    done = {"condition": "service_completed_successfully"}
    assert services["mlflow"]["depends_on"]["migrate"] == done
    assert services["init"]["depends_on"]["mlflow"] == {"condition": "service_healthy"}
