"""The layering of docs/architecture.md, enforced: import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from core.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def test_import_contracts_are_kept():
    lint_imports = shutil.which("lint-imports", path=str(BIN))
    assert lint_imports, "lint-imports is not installed (the import-linter package)"
    result = subprocess.run(
        [lint_imports, "--no-logo", "--no-cache"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
