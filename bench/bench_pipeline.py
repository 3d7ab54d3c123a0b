"""Pipeline benchmark: full repro from scratch twice, the second with every latency
measurement slowed x3 (PIPELINE_TIMING_SCALE), to show that model choice and bytes do not
depend on the machine's speed; no-op repro; served single-row latency and artifact size.

    .venv/bin/python bench/bench_pipeline.py
"""

from __future__ import annotations

import hashlib
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
from pipeline.measure import TIMING_SCALE_ENV, single_row_latency_ms


def repro(ws: Path, env: dict) -> float:
    """Seconds for `dvc repro` in ws."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=ws, env=env, check=True, capture_output=True
    )
    return time.perf_counter() - start


def fresh_run(root: Path, timing_scale: float = 1.0) -> dict:
    """Full repro in a new workspace and registry, then a no-op one; what it took and made."""
    state = root / "state"
    env = {**os.environ, **settings.QUIET_ENV, "STATE_DIR": str(state)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{state / 'mlflow.db'}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env[TIMING_SCALE_ENV] = str(timing_scale)
    os.environ.update({k: env[k] for k in ("STATE_DIR", "MLFLOW_TRACKING_URI")})
    registry.ensure_store(env["MLFLOW_TRACKING_URI"])  # once, before the stage processes
    ws = workspace.create(root / "ws")
    full = repro(ws, env)
    noop = repro(ws, env)
    made = {}
    for m in MODEL_SPECS:
        train = json.loads((ws / "models" / m / "train.json").read_text())
        made[m] = {
            "algorithm": train["algorithm"],
            "measured_ms": {c["algorithm"]: c["latency_ms"] for c in train["candidates"]},
            "metrics": json.loads((ws / "metrics" / f"{m}.json").read_text()),
            "model_md5": hashlib.md5((ws / "models" / m / "model.pkl").read_bytes()).hexdigest(),
        }
    return {"full": full, "noop": noop, "made": made}


def main() -> None:
    """Run the benchmark and print the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        normal = fresh_run(Path(tmp) / "a")
        slowed = fresh_run(Path(tmp) / "b", timing_scale=3.0)
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
    print("\npipeline benchmark (2 fresh workspaces and registries, full params.yaml;")
    print("the second run's latency measurements slowed x3)")
    print(f"  full dvc repro, both models : {normal['full']:6.1f} s, {slowed['full']:6.1f} s")
    print(f"  no-op dvc repro             : {normal['noop']:6.2f} s, {slowed['noop']:6.2f} s")
    for model in MODEL_SPECS:
        for label, run in (("normal", normal), ("slowed", slowed)):
            made = run["made"][model]
            figures = " ".join(f"{k}={v:.4f}" for k, v in sorted(made["metrics"].items()))
            timings = " ".join(f"{k}={v:.2f}ms" for k, v in made["measured_ms"].items())
            print(
                f"  {model:<7} {label}: picked {made['algorithm']}, model.pkl md5 "
                f"{made['model_md5']}, {figures}"
            )
            print(f"  {'':<7} {label}: measured (not used) {timings}")
    same = {
        model: normal["made"][model] | {"measured_ms": None}
        == slowed["made"][model] | {"measured_ms": None}
        for model in MODEL_SPECS
    }
    print(f"  same algorithm, metrics and model bytes in both runs: {same}")
    for model, algo, latency, size in rows:
        print(
            f"  served {model:<7} {algo:<23}: single-row {latency:.3f} ms, artifact {size:.2f} MB"
        )
    if not all(same.values()):
        sys.exit("the slowed run picked or produced something else")


if __name__ == "__main__":
    main()
