"""The monitor's thresholds: the `monitor:` and `comparison:` sections of the pipeline
workspace's params.yaml.

Read on every run, so a change applies without a restart (like the retrain params). Every key
is set in params.yaml: the code holds no defaults of its own. The `comparison:` section (champion
against challenger) is core.comparison's, which the API reads too; it is checked there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from core import comparison
from core.comparison import ComparisonParams
from core.specs import MODEL_SPECS


@dataclass(frozen=True)
class MonitorParams:
    """One model's `monitor:` settings."""

    drift_window_rows: int
    drift_min_rows: int
    max_drift_psi: float
    quality_window_rows: int
    quality_min_rows: int
    cooldown_minutes: float
    # The live-quality threshold of the model's task; absent, live quality never triggers.
    max_live_rmse: float | None = None  # regression
    min_live_accuracy: float | None = None  # classification
    # Champion against challenger (the `comparison:` section), set by load_params.
    comparison: ComparisonParams | None = None


REQUIRED = [f.name for f in dataclasses.fields(MonitorParams) if f.default is dataclasses.MISSING]
SETTINGS = {f.name for f in dataclasses.fields(MonitorParams)} - {"comparison"}


def load_params(workspace: Path) -> dict[str, MonitorParams]:
    """Every model's monitor settings from the workspace's params.yaml, checked first."""
    from pipeline import params  # worker side only; the check rejects unknown keys and values

    raw = params.load(Path(workspace) / params.PARAMS_FILE)
    params.check(raw)
    try:
        compared = comparison.check_params(raw)
    except comparison.ComparisonParamsError as exc:
        raise params.ParamsError(str(exc)) from None
    section = raw.get("monitor") or {}
    found = {}
    for name in MODEL_SPECS:
        cfg = section.get(name) or {}
        missing = [key for key in REQUIRED if key not in cfg]
        if missing:
            raise params.ParamsError(
                f"monitor.{name}.{missing[0]} is missing: params.yaml must set it"
            )
        settings = {key: value for key, value in cfg.items() if key in SETTINGS}
        found[name] = MonitorParams(**settings, comparison=compared[name])
    return found
