"""The monitor's thresholds: the `monitor:` section of the pipeline workspace's params.yaml.

Read on every run, so a change applies without a restart (like the retrain params). Every key
is set in params.yaml: the code holds no defaults of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

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


REQUIRED = [f.name for f in dataclasses.fields(MonitorParams) if f.default is dataclasses.MISSING]


def load_params(workspace: Path) -> dict[str, MonitorParams]:
    """Every model's monitor settings from the workspace's params.yaml, checked first."""
    from pipeline import params  # worker side only; the check rejects unknown keys and values

    raw = params.load(Path(workspace) / params.PARAMS_FILE)
    params.check(raw)
    section = raw.get("monitor") or {}
    found = {}
    for name in MODEL_SPECS:
        cfg = section.get(name) or {}
        missing = [key for key in REQUIRED if key not in cfg]
        if missing:
            raise params.ParamsError(
                f"monitor.{name}.{missing[0]} is missing: params.yaml must set it"
            )
        found[name] = MonitorParams(**cfg)
    return found
