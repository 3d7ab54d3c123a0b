"""Pipeline benchmark: full repro from scratch (twice, to check determinism), no-op repro,
served single-row latency and artifact size. Prints a table; the targets are issue 2's.

    .venv/bin/python bench/bench_pipeline.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow.artifacts
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import registry, settings
from core.specs import MODEL_SPECS
from pipeline import workspace
from pipeline.measure import single_row_latency_ms


def repro(ws: Path, env: dict) -> float:
    """Seconds for `dvc repro` in ws."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=ws, env=env, check=True, capture_output=True
    )
    return time.perf_counter() - start


def fresh_run(root: Path) -> tuple[float, float, dict, Path]:
    """Full repro in a new workspace and registry; returns (full s, no-op s, metrics, state)."""
    state = root / "state"
    env = {**os.environ, **settings.QUIET_ENV, "STATE_DIR": str(state)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{state / 'mlflow.db'}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    os.environ.update({k: env[k] for k in ("STATE_DIR", "MLFLOW_TRACKING_URI")})
    registry.ensure_store(env["MLFLOW_TRACKING_URI"])  # once, before the stage processes
    ws = workspace.create(root / "ws")
    full = repro(ws, env)
    noop = repro(ws, env)
    metrics = {m: json.loads((ws / "metrics" / f"{m}.json").read_text()) for m in MODEL_SPECS}
    return full, noop, metrics, state


def main() -> None:
    """Run the benchmark and print the figures against the targets."""
    with tempfile.TemporaryDirectory() as tmp:
        full1, noop1, metrics1, _ = fresh_run(Path(tmp) / "a")
        full2, noop2, metrics2, _ = fresh_run(Path(tmp) / "b")
        rows = []
        for model, spec in MODEL_SPECS.items():
            champ = registry.champion(spec.registered_name)
            served = registry.load_model(spec.registered_name, champ.version)
            x = np.array([list(spec.example_row().values())] * 50)
            latency = single_row_latency_ms(served, x, repeats=2000)
            local = mlflow.artifacts.download_artifacts(
                registry.model_uri(spec.registered_name, champ.version)
            )
            size = sum(f.stat().st_size for f in Path(local).rglob("*") if f.is_file())
            rows.append((model, champ.tags["algorithm"], latency, size / 1e6))
    print("\npipeline benchmark (2 fresh workspaces and registries, full params.yaml)")
    print(f"  full dvc repro, both models : {full1:6.1f} s, {full2:6.1f} s   (target <= 180 s)")
    print(f"  no-op dvc repro             : {noop1:6.2f} s, {noop2:6.2f} s   (target <= 5 s)")
    same = metrics1 == metrics2
    print(f"  identical metrics in 2 runs : {same}")
    h, i = metrics1["housing"], metrics1["iris"]
    print(
        f"  housing holdout             : rmse={h['rmse']:.4f} mae={h['mae']:.4f} r2={h['r2']:.4f}"
        "   (target rmse <= 0.47, aim 0.44)"
    )
    cv = next(v for k, v in i.items() if k.startswith("cv"))
    print(
        f"  iris                        : accuracy={i['accuracy']:.4f} cv_accuracy={cv:.4f}"
        "   (target cv >= 0.95)"
    )
    for model, algo, latency, size in rows:
        print(
            f"  served {model:<7} {algo:<23}: single-row {latency:.3f} ms, artifact {size:.2f} MB"
            "   (target <= 1 ms, <= 20 MB)"
        )
    if not same:
        sys.exit("metrics differ between two clean runs")


if __name__ == "__main__":
    main()
