"""Back up and restore the service's state: MLflow registry database, model artifacts, and the
app database (job records, prediction log).

    python deploy/backup.py backup [DEST]      # default DEST: backups/<UTC timestamp>
    python deploy/backup.py restore SRC        # stop the api and worker first

SQLite files are copied with SQLite's online backup API (consistent while the service runs);
PostgreSQL databases with pg_dump / pg_restore. The same environment variables as the service
say where things are (MLFLOW_TRACKING_URI, MLFLOW_ARTIFACT_ROOT, DATABASE_URL, STATE_DIR)."""

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

from core import settings


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
    return {"mlflow": settings.mlflow_tracking_uri(), "app": settings.database_url()}


def _artifact_dir() -> Path:
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


def main() -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    b.add_argument("dest", nargs="?", type=Path, default=Path("backups") / stamp)
    r = sub.add_parser("restore")
    r.add_argument("src", type=Path)
    args = parser.parse_args()
    try:
        if args.command == "backup":
            manifest = backup(args.dest)
            print(f"backup written to {args.dest}: {', '.join(manifest['stores'])}, artifacts")
        else:
            restore(args.src)
            print(f"restored from {args.src}")
    except (BackupError, OSError, subprocess.CalledProcessError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
