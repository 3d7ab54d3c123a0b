"""Back up and restore the service's state: MLflow registry database, model artifacts, and the
app database (job records, prediction log).

    python deploy/backup.py backup [DEST]      # default DEST: backups/<UTC timestamp>
    python deploy/backup.py restore SRC        # stop the api and worker first
    python3 deploy/backup.py --compose backup [DEST]   # the docker compose stack of this folder
    python3 deploy/backup.py --compose restore SRC

SQLite files are copied with SQLite's online backup API (consistent while the service runs);
PostgreSQL databases with pg_dump / pg_restore. The same environment variables as the service
say where things are (MLFLOW_TRACKING_URI, MLFLOW_ARTIFACT_ROOT, DATABASE_URL, STATE_DIR).

--compose works through `docker compose` (the usual COMPOSE_* variables and .env apply): the
databases are dumped and restored by the tools inside the postgres container, the artifacts are
read from and written to the MLflow server's volume. A backup is taken from the running stack; a
restore stops the stack, restores into its volumes (empty ones included: a fresh stack), and
leaves it to `docker compose up -d --wait`. It needs docker and python3, nothing else."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class BackupError(RuntimeError):
    """A store cannot be backed up or restored as configured."""


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def _pg_url(url: str) -> str | None:
    scheme = urlparse(url).scheme
    if scheme.startswith("postgres"):
        return url.replace("postgresql+psycopg2://", "postgresql://", 1)
    return None


def _copy_sqlite(src: Path, dest: Path) -> None:
    """Online, consistent copy of a live SQLite database."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _stores() -> dict[str, str]:
    from core import settings  # here: --compose runs on a bare python3, without the venv

    return {"mlflow": settings.mlflow_tracking_uri(), "app": settings.database_url()}


def _artifact_dir() -> Path:
    from core import settings

    return Path(urlparse(settings.mlflow_artifact_root()).path)


def backup(dest: Path) -> dict:
    """Write every store into dest; returns the manifest."""
    dest.mkdir(parents=True, exist_ok=False)
    manifest: dict = {"created_at": datetime.now(UTC).isoformat(), "stores": {}}
    for name, url in _stores().items():
        if (path := _sqlite_path(url)) is not None:
            if not path.exists():
                raise BackupError(f"{name} database {path} does not exist")
            _copy_sqlite(path, dest / f"{name}.sqlite")
            manifest["stores"][name] = {"kind": "sqlite", "file": f"{name}.sqlite"}
        elif (pg := _pg_url(url)) is not None:
            out = dest / f"{name}.pgdump"
            subprocess.run(["pg_dump", "--format=custom", "--file", str(out), pg], check=True)
            manifest["stores"][name] = {"kind": "postgresql", "file": out.name}
        else:
            raise BackupError(
                f"{name} store {urlparse(url).scheme}:// is a server: back up its own database"
            )
    artifacts = _artifact_dir()
    if artifacts.is_dir():
        with tarfile.open(dest / "artifacts.tar.gz", "w:gz") as tar:
            tar.add(artifacts, arcname="artifacts")
        manifest["artifacts"] = "artifacts.tar.gz"
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore(src: Path) -> dict:
    """Put every store of a backup back in place (the service must be stopped)."""
    manifest = json.loads((src / "manifest.json").read_text())
    stores = _stores()
    for name, entry in manifest["stores"].items():
        url = stores[name]
        if entry["kind"] == "sqlite":
            path = _sqlite_path(url)
            if path is None:
                raise BackupError(f"{name}: backup is SQLite but the configured store is not")
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            _copy_sqlite(src / entry["file"], path)
        else:
            pg = _pg_url(url)
            if pg is None:
                raise BackupError(f"{name}: backup is PostgreSQL but the configured store is not")
            subprocess.run(
                [
                    "pg_restore",
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--dbname",
                    pg,
                    str(src / entry["file"]),
                ],
                check=True,
            )
    if manifest.get("artifacts"):
        artifacts = _artifact_dir()
        if artifacts.exists():
            shutil.rmtree(artifacts)
        artifacts.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(src / manifest["artifacts"]) as tar:
            tar.extractall(artifacts.parent, filter="data")
        extracted = artifacts.parent / "artifacts"
        if extracted != artifacts:
            extracted.rename(artifacts)
    return manifest


# -- the docker compose stack -------------------------------------------------------------------
COMPOSE_DATABASES = {"app": "app", "mlflow": "mlflow"}  # store name -> database in postgres
COMPOSE_ARTIFACTS = "/mlartifacts"  # the mlflow service's artifact volume
COMPOSE_TIMEOUT_SECONDS = 1800


def _compose(*args: str, stdin=None, stdout=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "compose", *args],
        stdin=stdin,
        stdout=stdout,
        check=True,
        timeout=COMPOSE_TIMEOUT_SECONDS,
    )


def _in_postgres(script: str, database: str, **streams) -> None:
    # The tools run inside the container as POSTGRES_USER over its local socket (trusted by the
    # official image): no password leaves the container, no PostgreSQL tools on this machine.
    _compose("exec", "-T", "postgres", "sh", "-c", script, "sh", database, **streams)


def compose_backup(dest: Path) -> dict:
    """Dump both databases and the artifact volume of the running compose stack into dest."""
    dest.mkdir(parents=True, exist_ok=False)
    manifest: dict = {
        "created_at": datetime.now(UTC).isoformat(),
        "deployment": "compose",
        "stores": {},
    }
    # Databases first, artifacts last: every version in the registry dump has its files already.
    for name, database in COMPOSE_DATABASES.items():
        out = dest / f"{name}.pgdump"
        with out.open("wb") as fh:
            _in_postgres('pg_dump -U "$POSTGRES_USER" --format=custom "$1"', database, stdout=fh)
        manifest["stores"][name] = {"kind": "postgresql", "file": out.name}
    with (dest / "artifacts.tar.gz").open("wb") as fh:
        _compose(
            "exec", "-T", "mlflow", "tar", "-C", COMPOSE_ARTIFACTS, "-czf", "-", ".", stdout=fh
        )
    manifest["artifacts"] = "artifacts.tar.gz"
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def compose_restore(src: Path) -> dict:
    """Stop the compose stack and put a compose backup into its volumes (fresh ones included)."""
    manifest = json.loads((src / "manifest.json").read_text())
    if manifest.get("deployment") != "compose":
        raise BackupError("not a compose backup: restore it with the native command")
    _compose("stop")  # nothing may write while the stores are replaced
    _compose("up", "-d", "--wait", "postgres")
    for name, entry in manifest["stores"].items():
        with (src / entry["file"]).open("rb") as fh:
            _in_postgres(
                'pg_restore -U "$POSTGRES_USER" --clean --if-exists --no-owner --exit-on-error '
                '--dbname "$1"',
                COMPOSE_DATABASES[name],
                stdin=fh,
            )
    with (src / manifest["artifacts"]).open("rb") as fh:
        _compose(
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "mlflow",
            "sh",
            "-c",
            'find "$1" -mindepth 1 -delete && tar -C "$1" -xzf -',
            "sh",
            COMPOSE_ARTIFACTS,
            stdin=fh,
        )
    return manifest


def main() -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compose", action="store_true", help="the docker compose stack of this folder"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    b.add_argument("dest", nargs="?", type=Path, default=Path("backups") / stamp)
    r = sub.add_parser("restore")
    r.add_argument("src", type=Path)
    args = parser.parse_args()
    try:
        if args.command == "backup":
            manifest = (compose_backup if args.compose else backup)(args.dest)
            print(f"backup written to {args.dest}: {', '.join(manifest['stores'])}, artifacts")
        elif args.compose:
            compose_restore(args.src)
            print(f"restored from {args.src}; start the stack: docker compose up -d --wait")
        else:
            restore(args.src)
            print(f"restored from {args.src}")
    except (
        BackupError,
        OSError,
        subprocess.CalledProcessError,
        subprocess.TimeoutExpired,
        sqlite3.Error,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
