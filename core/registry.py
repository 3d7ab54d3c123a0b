"""The one place that talks to the MLflow Model Registry: versions, aliases, tags, loading.

Alias moves are ordered so that a crash between two writes never leaves ``champion`` pointing
at a version that was not meant to serve: ``previous`` is written before ``champion`` moves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import settings
from core.specs import ALIAS_CHALLENGER, ALIAS_CHAMPION, ALIAS_PREVIOUS

log = logging.getLogger(__name__)

TAG_PREVIOUS_CHAMPION = "previous_champion"
TAG_REJECTED_REASON = "rejected_reason"
TAG_PROMOTED = "promoted"


class RegistryError(Exception):
    """Base class for registry failures a caller can report to a user."""


class NotFound(RegistryError):
    """The registered model or version does not exist."""


class Conflict(RegistryError):
    """The requested alias move is not possible in the current state."""


class StoreMissing(RegistryError):
    """The registry's SQLite database file is not there (and must not be created empty)."""


# The SQLite registry file that must already exist (set by configure(must_exist=True), the API's
# choice): MLflow would otherwise create an empty registry on first contact, which hides a
# missing or misplaced database behind "no champion" and is never replaced by the real one.
_required_file: Path | None = None


@dataclass
class VersionInfo:
    """A registered model version with its aliases and tags."""

    registered_name: str
    version: str
    run_id: str | None
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    created_at: int | None = None
    source: str | None = None

    def tag_json(self, key: str, default: Any = None) -> Any:
        """A tag holding JSON, decoded (default when absent or unreadable)."""
        raw = self.tags.get(key)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            return default

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view for JSON responses and CLI output."""
        return {
            "registered_name": self.registered_name,
            "version": self.version,
            "run_id": self.run_id,
            "aliases": sorted(self.aliases),
            "tags": dict(self.tags),
            "created_at": self.created_at,
        }


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:// URI; None for other stores and in-memory SQLite."""
    from sqlalchemy.engine import make_url

    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


def configure(tracking_uri: str | None = None, must_exist: bool = False) -> str:
    """Point MLflow (tracking and registry) at tracking_uri or the configured default.

    must_exist: a SQLite registry file is only read, never created (registry calls raise
    StoreMissing until it appears).
    """
    import mlflow

    global _required_file
    settings.apply_quiet_env()
    uri = tracking_uri or settings.mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _required_file = _sqlite_file(uri) if must_exist else None
    return uri


def _check_store() -> None:
    if _required_file is not None and not _required_file.exists():
        raise StoreMissing(f"MLflow database {_required_file} does not exist")


def _client():
    from mlflow import MlflowClient

    _check_store()
    return MlflowClient()


def ensure_store(tracking_uri: str | None = None) -> str:
    """Create the backing store and the experiment once, before several processes share it;
    this process then logs runs to that experiment."""
    import mlflow

    uri = configure(tracking_uri)
    name = settings.experiment_name()
    if mlflow.get_experiment_by_name(name) is None:
        if uri.startswith("sqlite:///"):
            settings.state_dir().mkdir(parents=True, exist_ok=True)
            mlflow.create_experiment(name, artifact_location=settings.mlflow_artifact_root())
        else:
            mlflow.create_experiment(name)
    # Not MLflow's Default experiment: its artifacts go to ./mlruns of whichever directory
    # created the database, not to the state dir (embedded) or the tracking server's store.
    mlflow.set_experiment(name)
    return uri


def upgrade_store(store_uri: str) -> None:
    """Create MLflow's database, or bring it to this MLflow's schema: `mlflow db upgrade`.

    The CLI command runs in this process, so the URI and its password stay off every command
    line. Run it once, before the processes that use the store start (MLflow refuses a store
    whose schema is older than its own).
    """
    from mlflow.db import upgrade

    settings.apply_quiet_env()
    if (path := _sqlite_file(store_uri)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    upgrade.main(args=[store_uri], prog_name="mlflow db upgrade", standalone_mode=False)


def _info(mv) -> VersionInfo:
    return VersionInfo(
        registered_name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        aliases=list(getattr(mv, "aliases", []) or []),
        tags=dict(mv.tags or {}),
        created_at=mv.creation_timestamp,
        source=mv.source,
    )


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return (
        code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
        or "not found" in str(exc).lower()
    )


def get_alias(registered_name: str, alias: str) -> VersionInfo | None:
    """The version an alias points at, or None when the alias or model does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return _info(_client().get_model_version_by_alias(registered_name, alias))
    except MlflowException as exc:
        if _is_not_found(exc):
            return None
        raise


def champion(registered_name: str) -> VersionInfo | None:
    """The version currently served, or None."""
    return get_alias(registered_name, ALIAS_CHAMPION)


def get_version(registered_name: str, version: str) -> VersionInfo:
    """One version; NotFound when it does not exist."""
    from mlflow.exceptions import MlflowException

    if not str(version).isdigit():
        raise NotFound(f"version {version!r} of {registered_name} does not exist")
    try:
        return _info(_client().get_model_version(registered_name, str(version)))
    except MlflowException as exc:
        if _is_not_found(exc):
            raise NotFound(f"version {version} of {registered_name} does not exist") from exc
        raise


def list_versions(registered_name: str) -> list[VersionInfo]:
    """Every version of a registered model, newest first (empty when it does not exist)."""
    client = _client()
    found = [_info(mv) for mv in client.search_model_versions(f"name = '{registered_name}'")]
    if found:
        # Version search does not return aliases on every backend; the model record has them.
        by_version: dict[str, list[str]] = {}
        for alias, version in (client.get_registered_model(registered_name).aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        for info in found:
            info.aliases = sorted(by_version.get(info.version, []))
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def register(model_uri: str, registered_name: str, tags: dict[str, str]) -> VersionInfo:
    """Register a logged model as a new version carrying tags; returns the new version."""
    import mlflow

    client = _client()
    try:
        client.get_registered_model(registered_name)
    except Exception:
        client.create_registered_model(registered_name)
    mv = mlflow.register_model(model_uri, registered_name, tags=tags)
    return get_version(registered_name, str(mv.version))


def set_tags(registered_name: str, version: str, tags: dict[str, str]) -> None:
    """Set tags on a version."""
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(registered_name, str(version), key, str(value))


def model_state(registered_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """The registered model's aliases (alias -> version) and its own tags, in one call;
    both empty when the model does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        record = _client().get_registered_model(registered_name)
    except MlflowException as exc:
        if _is_not_found(exc):
            return {}, {}
        raise
    aliases = {alias: str(version) for alias, version in (record.aliases or {}).items()}
    return aliases, dict(record.tags or {})


def set_model_tag(registered_name: str, key: str, value: str) -> None:
    """Set a tag of the registered model itself (not of a version)."""
    _client().set_registered_model_tag(registered_name, key, value)


def delete_model_tag(registered_name: str, key: str) -> None:
    """Remove a tag of the registered model; nothing happens when it is not set."""
    from mlflow.exceptions import MlflowException

    try:
        _client().delete_registered_model_tag(registered_name, key)
    except MlflowException as exc:
        if not _is_not_found(exc):
            raise


def set_challenger(registered_name: str, version: str) -> None:
    """Mark the latest candidate."""
    _client().set_registered_model_alias(registered_name, ALIAS_CHALLENGER, str(version))


def clear_challenger(registered_name: str, version: str) -> bool:
    """Remove @challenger when it still points at version (a rejected candidate); False when
    it has moved on (a newer candidate keeps it) or is not set."""
    current = get_alias(registered_name, ALIAS_CHALLENGER)
    if current is None or current.version != str(version):
        return False
    _client().delete_registered_model_alias(registered_name, ALIAS_CHALLENGER)
    log.info("removed @challenger from %s version %s", registered_name, version)
    return True


def promote(registered_name: str, version: str) -> VersionInfo:
    """Make version the champion, keeping the old champion as ``previous``."""
    target = get_version(registered_name, version)
    current = champion(registered_name)
    if current is not None and current.version == target.version:
        raise Conflict(f"version {version} of {registered_name} is already champion")
    client = _client()
    if current is not None:
        # Order matters: remember the predecessor, then previous, and move champion last.
        client.set_model_version_tag(
            registered_name, target.version, TAG_PREVIOUS_CHAMPION, current.version
        )
        client.set_registered_model_alias(registered_name, ALIAS_PREVIOUS, current.version)
    client.set_model_version_tag(registered_name, target.version, TAG_PROMOTED, "true")
    client.set_registered_model_alias(registered_name, ALIAS_CHAMPION, target.version)
    log.info("promoted %s version %s", registered_name, target.version)
    return get_version(registered_name, target.version)


def rollback(registered_name: str) -> VersionInfo:
    """Move champion back to ``previous``; ``previous`` then steps one further back."""
    current = champion(registered_name)
    prev = get_alias(registered_name, ALIAS_PREVIOUS)
    if current is None or prev is None or prev.version == current.version:
        raise Conflict(f"{registered_name} has no previous champion to roll back to")
    client = _client()
    client.set_registered_model_alias(registered_name, ALIAS_CHAMPION, prev.version)
    before = prev.tags.get(TAG_PREVIOUS_CHAMPION)
    if before and before != prev.version:
        client.set_registered_model_alias(registered_name, ALIAS_PREVIOUS, before)
    else:
        client.delete_registered_model_alias(registered_name, ALIAS_PREVIOUS)
    log.info("rolled %s back from %s to %s", registered_name, current.version, prev.version)
    return get_version(registered_name, prev.version)


def model_uri(registered_name: str, version: str) -> str:
    """The models:/ URI of one version."""
    return f"models:/{registered_name}/{version}"


def load_model(registered_name: str, version: str) -> Any:
    """Load one version as its native scikit-learn object."""
    import mlflow.sklearn

    _check_store()
    return mlflow.sklearn.load_model(model_uri(registered_name, version))


# Where mlflow's log_model(extra_files=...) puts files inside a logged model's folder.
EXTRA_FILES_DIR = "extra_files"


def load_model_and_files(registered_name: str, version: str) -> tuple[Any, dict[str, bytes]]:
    """One version's scikit-learn object and the extra files logged with it (name -> bytes),
    from one download of its folder."""
    import tempfile

    import mlflow.artifacts
    import mlflow.sklearn

    _check_store()
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri(registered_name, version), dst_path=tmp
            )
        )
        model = mlflow.sklearn.load_model(str(local))
        extra = local / EXTRA_FILES_DIR
        files = (
            {path.name: path.read_bytes() for path in extra.iterdir() if path.is_file()}
            if extra.is_dir()
            else {}
        )
    return model, files


DRIFT_REFERENCE_ARTIFACT = "drift_reference.json"
# The validate stage's report, logged by the register stage with every version it registers.
VALIDATION_REPORT_ARTIFACT = "reports/validation.json"


def load_validation_report(registered_name: str, version: str) -> dict[str, Any] | None:
    """The validate stage's report stored with a version's run; None when it has none.

    Raises NotFound for an unknown version; other registry or artifact-store failures propagate
    (the caller cannot tell "no report" from "store down" otherwise).
    """
    info = get_version(registered_name, version)
    if not info.run_id:
        return None
    return _json_artifact(f"runs:/{info.run_id}/{VALIDATION_REPORT_ARTIFACT}")


def _json_artifact(uri: str) -> dict[str, Any] | None:
    """A JSON object stored as an artifact; None when there is no such file (any other failure
    of the registry or the artifact store propagates)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        data = mlflow.artifacts.load_dict(uri)
    except MlflowException as exc:
        if _is_not_found(exc):
            return None
        raise
    except (FileNotFoundError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
            return None
        raise
    return data if isinstance(data, dict) else None


def load_drift_reference(registered_name: str, version: str) -> dict[str, Any] | None:
    """The training-data drift reference stored with a version's run (None when it has none)."""
    import mlflow.artifacts

    info = get_version(registered_name, version)
    if not info.run_id:
        return None
    try:
        return mlflow.artifacts.load_dict(f"runs:/{info.run_id}/{DRIFT_REFERENCE_ARTIFACT}")
    except Exception as exc:  # MLflow raises several types for a missing artifact
        log.warning("no drift reference for %s version %s: %s", registered_name, version, exc)
        return None


def load_conformal(registered_name: str, version: str) -> dict[str, Any] | None:
    """The conformal.json stored with a version (core.conformal), downloading only that file;
    None when the version has none (registered before intervals existed).

    Raises NotFound for an unknown version; other registry or artifact-store failures propagate.
    """
    from core.conformal import CONFORMAL_FILE

    get_version(registered_name, version)  # NotFound first: "no file" must mean just that
    return _json_artifact(
        f"{model_uri(registered_name, version)}/{EXTRA_FILES_DIR}/{CONFORMAL_FILE}"
    )
