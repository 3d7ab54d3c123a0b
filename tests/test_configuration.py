"""Every environment variable is documented in one place: its declaration in a settings class.

The README's configuration table must be exactly what the declarations render, and
deploy/env.example must list every declared variable and nothing that nobody reads.
"""

from __future__ import annotations

import re

from pydantic.fields import FieldInfo

from app.config import ApiSettings, ServerSettings
from core.settings import PROJECT_ROOT, Settings
from workers.config import WorkerSettings

SETTINGS_CLASSES: tuple[type[Settings], ...] = (
    Settings,
    ApiSettings,
    ServerSettings,
    WorkerSettings,
)
README = PROJECT_ROOT / "README.md"
ENV_EXAMPLE = PROJECT_ROOT / "deploy" / "env.example"
# Where the launchers and compose read variables the settings classes do not declare.
LAUNCH_FILES = ("docker-compose.yml", "Dockerfile", "Makefile")
READ_BY_SHELL = re.compile(r"\$\{?([A-Z][A-Z0-9_]+)")
READ_BY_PYTHON = re.compile(r"environ(?:\.get\(|\[)\s*[\"']([A-Z][A-Z0-9_]+)")


def declared() -> dict[str, FieldInfo]:
    """Every declared variable by name, each from the one class whose body declares it."""
    found: dict[str, FieldInfo] = {}
    for cls in SETTINGS_CLASSES:
        own = vars(cls).get("__annotations__", {})
        for name in own:
            field = cls.model_fields[name]
            assert field.alias not in found, f"{field.alias} is declared twice"
            found[field.alias] = field
    return found


def shown_default(field: FieldInfo) -> str:
    """The default as the table shows it."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if extra.get("shown"):
        return str(extra["shown"])
    value = field.default
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table_rows() -> list[str]:
    """The README's configuration table, one row per variable, as the declarations render it."""
    return [
        f"| `{name}` | `{shown_default(field)}` | {field.description} |"
        for name, field in declared().items()
    ]


def readme_rows() -> list[str]:
    """The body rows of the table under README's "## Configuration"."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    header = "| variable | default | meaning |\n|---|---|---|\n"
    assert header in section, "README's configuration section has no variable table"
    body = section.split(header, 1)[1]
    return body.split("\n\n", 1)[0].splitlines()


def test_every_declaration_has_a_name_and_a_meaning():
    for name, field in declared().items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", name), name
        assert field.description and not field.description.endswith("."), name


def test_every_process_gets_the_shared_defaults(monkeypatch):
    for name in ("STATE_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_ARTIFACT_ROOT", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for cls in SETTINGS_CLASSES:  # a subclass's validator must not replace Settings' own
        settings = cls()
        assert settings.state_dir == PROJECT_ROOT / "var", cls
        assert settings.database_url == f"sqlite:///{PROJECT_ROOT / 'var' / 'app.db'}", cls
        assert settings.mlflow_tracking_uri.endswith("/var/mlflow.db"), cls


def test_readme_table_is_rendered_from_the_declarations():
    expected = table_rows()
    assert readme_rows() == expected, "README.md ## Configuration should read:\n" + "\n".join(
        expected
    )


def test_env_example_lists_every_variable_and_only_read_ones():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    names = set(declared())
    assert names <= documented, f"missing from deploy/env.example: {sorted(names - documented)}"
    launch = [PROJECT_ROOT / name for name in LAUNCH_FILES]
    launch += [path for path in (PROJECT_ROOT / "deploy").rglob("*") if path != ENV_EXAMPLE]
    read_elsewhere = {
        name
        for path in launch
        if path.is_file()
        for pattern in (READ_BY_SHELL, READ_BY_PYTHON)
        for name in pattern.findall(path.read_text(errors="replace"))
    }
    unread = documented - names - read_elsewhere
    assert not unread, f"deploy/env.example documents variables nothing reads: {sorted(unread)}"
