"""The compose full stack, proven by running it: built from this checkout, brought up with two
api and two worker replicas and the monitoring profile (Grafana aside), and driven through the
load balancer on 127.0.0.1 the way an operator would. Run by `make compose-test`, which starts
a Docker engine and points the compose file at local stand-in images when needed.

The tests share one stack and run in file order: each phase builds on the state the one before
left (a promoted version, job history, a backup). For speed the pipeline runs with the suite's
small params: init trains with a weaker housing profile (ridge only), so the first forced
retrain is a promotion the gate must grant.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from core.settings import PROJECT_ROOT
from tests.compose.conftest import LOGS, TIMINGS

pytestmark = pytest.mark.timeout(1800)

PROJECT = "prediction-compose-test"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
TEST_PARAMS = PROJECT_ROOT / "tests" / "params.test.yaml"
APP_IMAGE = "prediction-service:compose-test"
# The monitoring profile without Grafana (no Debian package: its provisioning is checked
# statically by tests/monitoring).
SERVICES = ["redis", "postgres", "mlflow", "init", "api", "worker", "monitor", "beat", "lb"]
SERVICES += ["prometheus"]
SCALE = ["--scale", "api=2", "--scale", "worker=2"]
MODELS = ("housing", "iris")
HOUSING_ROW = {
    "MedInc": 8.3252,
    "HouseAge": 41.0,
    "AveRooms": 6.98,
    "AveBedrms": 1.02,
    "Population": 322.0,
    "AveOccup": 2.56,
    "Latitude": 37.88,
    "Longitude": -122.23,
}
IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
ROWS = {"housing": HOUSING_ROW, "iris": IRIS_ROW}
# The image's variables a caller may set (deploy/compose/test.sh exports the local stand-ins).
# The commit the image is built from (deploy/compose/test.sh exports it; else this checkout's).
GIT_COMMIT = (
    os.environ.get("GIT_COMMIT")
    or subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
)
IMAGE_VARS = ("BASE_IMAGE", "REDIS_IMAGE", "POSTGRES_IMAGE", "NGINX_IMAGE", "PROMETHEUS_IMAGE")


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time one phase of the test for the summary printed at the end."""
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS[name] = time.monotonic() - start


def wait_for(what: str, check: Callable[[], Any], deadline_s: float, every_s: float = 1.0) -> Any:
    """Poll check until it returns something truthy; fail with the last value at the deadline."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while True:
        try:
            last = check()
        except (requests.RequestException, subprocess.SubprocessError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline_s:.0f} s; last: {last!r}")
        time.sleep(every_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """One compose project with its own settings, ports and params, driven from the host."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = secrets.token_hex(16)
        self.password = secrets.token_hex(12)
        self.api_port, self.prometheus_port = free_port(), free_port()
        self.predicted = 0  # rows this test had predicted: the prediction log must hold them all
        values = {
            "APP_IMAGE": APP_IMAGE,
            "API_ADMIN_TOKEN": self.token,
            "POSTGRES_USER": "service",
            "POSTGRES_PASSWORD": self.password,
            "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(8),
            "PUBLISH_ADDRESS": "127.0.0.1",
            "API_PORT": str(self.api_port),
            "PROMETHEUS_PORT": str(self.prometheus_port),
            "GRAFANA_PORT": str(free_port()),
            "MODEL_REFRESH_SECONDS": "2",
            # A killed worker's job is found orphaned in seconds, not a minute.
            "JOB_HEARTBEAT_SECONDS": "2",
            "JOB_STALE_SECONDS": "15",
            "JOB_SWEEP_SECONDS": "5",
            # The monitor must not start retrains of its own while the test counts jobs.
            "MONITOR_INTERVAL_SECONDS": "86400",
            **{k: os.environ[k] for k in IMAGE_VARS if os.environ.get(k)},
            "GIT_COMMIT": GIT_COMMIT,  # a build argument: versions the image registers carry it
        }
        env_file = root / "compose.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        override = root / "compose.test.yml"
        init_params = root / "params.init.yaml"
        init_params.write_text(yaml.safe_dump(weaker_housing(TEST_PARAMS)))
        init_params.chmod(0o644)
        mount = f"{TEST_PARAMS}:/app/params.yaml:ro"
        override.write_text(
            yaml.safe_dump(
                {
                    "services": {
                        "init": {"volumes": [f"{init_params}:/app/params.yaml:ro"]},
                        "worker": {"volumes": [mount]},
                        "monitor": {"volumes": [mount]},
                    }
                }
            )
        )
        # Every variable the compose file reads comes from the env file, none from the caller's
        # shell or a developer's .env.
        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
        self.env = {k: v for k, v in os.environ.items() if k not in used}
        self.env.update(
            COMPOSE_PROJECT_NAME=PROJECT,
            COMPOSE_FILE=f"{COMPOSE_FILE}{os.pathsep}{override}",
            COMPOSE_ENV_FILES=str(env_file),
            COMPOSE_PROFILES="monitoring",
            DOCKER_BUILDKIT="0",
        )

    # -- docker --------------------------------------------------------------------------------
    def compose(self, *args: str, timeout: float = 900) -> str:
        res = subprocess.run(
            ["docker", "compose", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert res.returncode == 0, f"docker compose {' '.join(args)}:\n{res.stdout}{res.stderr}"
        return res.stdout

    def up(self) -> None:
        self.compose("up", "-d", "--wait", "--wait-timeout", "600", *SCALE, *SERVICES)

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def exec(self, service: str, index: int, *cmd: str) -> str:
        return self.compose("exec", "-T", "--index", str(index), service, *cmd, timeout=60)

    def inspect(self, container: str) -> dict:
        out = subprocess.run(
            ["docker", "inspect", container], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)[0]

    def logs(self) -> str:
        try:
            return self.compose("logs", "--no-color", "--tail", "60", timeout=120)
        except AssertionError as exc:
            return str(exc)

    # -- http ----------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.api_port}{path}"

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, admin: bool = False) -> requests.Response:
        return requests.get(self.url(path), headers=self.admin() if admin else {}, timeout=10)

    def predict(self, model: str) -> dict:
        res = requests.post(self.url(f"/predict/{model}"), json=ROWS[model], timeout=10)
        assert res.status_code == 200, res.text
        self.predicted += 1
        return res.json()

    def retrain(self, model: str, expect: int = 202) -> dict:
        res = requests.post(
            self.url("/retrain"),
            json={"model": model, "force": True},
            headers=self.admin(),
            timeout=10,
        )
        assert res.status_code == expect, res.text
        return res.json()

    def job(self, job_id: str) -> dict:
        res = self.get(f"/jobs/{job_id}")
        assert res.status_code == 200, res.text
        return res.json()

    def finished(self, job_id: str, deadline_s: float = 420) -> dict:
        def done() -> dict | None:
            job = self.job(job_id)
            return job if job["state"] in ("succeeded", "failed") else None

        return wait_for(f"job {job_id} to finish", done, deadline_s)

    def champions(self) -> dict[str, str]:
        return {m: self.get(f"/models/{m}").json()["served"]["version"] for m in MODELS}


def weaker_housing(params_file: Path) -> dict:
    """The suite's params with ridge as housing's only candidate (and thresholds it passes)."""
    params = yaml.safe_load(params_file.read_text())
    ridge = params["train"]["housing"]["candidates"]["ridge"]
    params["train"]["housing"]["candidates"] = {"ridge": ridge}
    params["validate"]["housing"].update(max_rmse=1.0, min_r2=0.4)
    return params


def snapshot(stack: Stack) -> dict:
    """What must survive restarts: job records, prediction log rows, versions, champions."""
    jobs = stack.get("/jobs?limit=200").json()["jobs"]

    def logged() -> list[dict] | None:
        rows = stack.get("/predictions?limit=1000", admin=True).json()["predictions"]
        return rows if len(rows) == stack.predicted else None

    log = wait_for(f"all {stack.predicted} predicted rows in the prediction log", logged, 30)
    versions = {
        m: sorted(
            (v["version"], tuple(sorted(v["aliases"])))
            for v in stack.get(f"/models/{m}").json()["versions"]
        )
        for m in MODELS
    }
    return {
        "jobs": {j["job_id"]: (j["state"], j["attempts"], j["result"]) for j in jobs},
        "predictions": sorted(p["id"] for p in log),
        "versions": versions,
        "champions": stack.champions(),
    }


def serving_everywhere(stack: Stack, model: str, version: str) -> None:
    """Every api replica (asked directly, inside it) and the load balancer serve version."""

    def replicas_agree() -> bool:
        for index in range(1, len(stack.containers("api")) + 1):
            got = stack.exec("api", index, "curl", "-fsS", f"http://127.0.0.1:8000/models/{model}")
            info = json.loads(got)
            if info["served"]["version"] != version:
                return False
        return True

    wait_for(f"every api replica serving {model} v{version}", replicas_agree, 90, every_s=2)
    answers = {stack.predict(model)["model"]["version"] for _ in range(10)}
    assert answers == {version}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("compose"))
    LOGS.append(s.logs)
    s.compose("down", "-v", "--remove-orphans", timeout=300)  # what a crashed run left
    try:
        with phase("build the app image"):
            s.compose("build", timeout=1500)
        with phase("up --wait (2 api, 2 workers, monitoring): init trains both models"):
            s.up()
        yield s
    finally:
        LOGS.clear()
        with phase("down -v"):
            s.compose("down", "-v", "--remove-orphans", timeout=300)
        label = f"label=com.docker.compose.project={PROJECT}"
        leftover = subprocess.run(
            ["docker", "volume", "ls", "-q", "--filter", label],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert leftover == [], f"volumes left after down -v: {leftover}"


# -- the image and the containers ------------------------------------------------------------------


def test_image_holds_runtime_only_and_its_code_is_read_only(stack):
    with phase("image and container checks"):
        found = subprocess.run(
            [
                "docker", "run", "--rm", "--entrypoint", "python", APP_IMAGE, "-c",
                "import importlib.util as u, shutil; "
                "print([m for m in ('pytest', 'ruff', 'schemathesis', 'check_jsonschema', "
                "'coverage', 'honcho', 'hypothesis') if u.find_spec(m)] "
                "+ [t for t in ('hadolint', 'actionlint', 'ruff', 'pytest') if shutil.which(t)])",
            ],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert found == "[]", f"test tools in the image: {found}"
        assert stack.exec("api", 1, "id", "-u").strip() == "10001"
        # Code and params belong to root; tests, backups, git history, local state stay out.
        stack.exec("api", 1, "sh", "-c", "test ! -w /app/app && test ! -w /app/params.yaml")
        stack.exec("api", 1, "sh", "-c", "! ls -d /app/tests /app/backups /app/.git /app/var/*.db")
        # Named volumes start owned by the app user (the image has their directories).
        assert stack.exec("mlflow", 1, "stat", "-c", "%u", "/mlartifacts").strip() == "10001"
        # Each worker's workspace is its own and holds data and state only: code and params are
        # links into the image, so a new image's apply on its next start.
        for index in (1, 2):
            links = stack.exec(
                "worker", index, "readlink", "/app/var/workspace/pipeline",
                "/app/var/workspace/params.yaml", "/app/var/workspace/dvc.yaml",
            ).split()  # fmt: skip
            assert links == ["/app/pipeline", "/app/params.yaml", "/app/dvc.yaml"]


def test_every_role_has_its_own_healthcheck(stack):
    health = {}
    for service in ("api", "worker", "monitor", "mlflow", "redis", "postgres", "prometheus"):
        for container in stack.containers(service):
            health[container] = (service, stack.inspect(container)["State"]["Health"]["Status"])
    assert {status for _, status in health.values()} == {"healthy"}, health
    for service in ("beat", "init"):
        (container,) = stack.compose("ps", "-aq", service).split()
        config = stack.inspect(container)["Config"]
        assert config.get("Healthcheck") is None, f"{service} inherits a healthcheck"
    api = stack.inspect(stack.containers("api")[0])
    assert "/health/ready" in " ".join(api["Config"]["Healthcheck"]["Test"])


def test_no_password_or_token_in_any_process_arguments(stack):
    containers = stack.compose("ps", "-q").split()
    assert len(containers) >= 10
    for container in containers:
        top = subprocess.run(
            ["docker", "top", container, "-eo", "pid,args"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert stack.password not in top, f"{container}: password on a command line:\n{top}"
        assert stack.token not in top, f"{container}: admin token on a command line:\n{top}"


# -- serving, retraining, monitoring ---------------------------------------------------------------


def test_both_models_answer_through_the_load_balancer(stack):
    with phase("predictions through the load balancer"):
        for model in MODELS:
            for _ in range(5):
                body = stack.predict(model)
                assert body["model"]["name"] == model and body["model"]["version"] == "1"
        assert stack.predict("iris")["prediction"] == "setosa"


def test_prometheus_scrapes_every_replica(stack):
    def targets_up() -> dict | None:
        res = requests.get(
            f"http://127.0.0.1:{stack.prometheus_port}/api/v1/targets", timeout=5
        ).json()
        active = res["data"]["activeTargets"]
        jobs = sorted(t["labels"]["job"] for t in active)
        up = all(t["health"] == "up" for t in active)
        return {"jobs": jobs} if up and jobs == ["api"] * 2 + ["monitor"] + ["worker"] * 2 else None

    with phase("Prometheus targets all up"):
        wait_for("Prometheus: api x2, worker x2, monitor up", targets_up, 120, every_s=2)


def test_load_balancer_sends_requests_to_ready_replicas_only(stack):
    """One api replica restarted under traffic (graceful stop, then loading its models, 503 until
    ready): every request through the load balancer is answered by a ready replica."""
    victim = stack.containers("api")[0]
    with phase("an api replica restarted under traffic, no request failed"):
        restart = subprocess.Popen(["docker", "restart", victim], stdout=subprocess.DEVNULL)
        end = time.monotonic() + 240
        answered, unready_seen = 0, False
        while True:
            stack.predict("housing")  # asserts a 200
            answered += 1
            if restart.poll() is not None:
                status = stack.inspect(victim)["State"]["Health"]["Status"]
                unready_seen = unready_seen or status != "healthy"
                if status == "healthy":
                    break
            assert time.monotonic() < end, f"{victim} not healthy again within 240 s"
            time.sleep(0.2)  # pacing: a few hundred requests at most
    assert restart.returncode == 0
    assert unready_seen, "the replica was never seen unready: the window was not exercised"
    assert answered > 10


def test_forced_retrain_is_promoted_and_served_by_every_replica(stack):
    with phase("forced housing retrain, promoted, served by every replica"):
        job = stack.finished(stack.retrain("housing")["job_id"])
        assert job["state"] == "succeeded", job
        result = job["result"]["housing"]
        assert result["promoted"] is True, result
        serving_everywhere(stack, "housing", result["candidate_version"])
        # The image has no .git: it tags versions with the commit it was built from.
        info = stack.get("/models/info").json()["models"]
        served = next(m for m in info if m["name"] == "housing")
        assert served["git_commit"] == GIT_COMMIT, served


def test_two_workers_retrain_housing_and_iris_at_once(stack):
    with phase("housing and iris retrains at once on two workers"):
        housing = stack.retrain("housing")["job_id"]
        iris = stack.retrain("iris")["job_id"]
        # Single flight stays in the database: a second housing retrain is refused, naming the
        # first.
        assert housing in json.dumps(stack.retrain("housing", expect=409))
        h, i = stack.finished(housing), stack.finished(iris)
    assert h["state"] == i["state"] == "succeeded", (h, i)
    assert h["worker"] != i["worker"], "both ran on one worker"
    h_at, i_at = (
        {k: datetime.fromisoformat(j[k]) for k in ("started_at", "finished_at")} for j in (h, i)
    )
    assert h_at["started_at"] < i_at["finished_at"] and i_at["started_at"] < h_at["finished_at"]


def test_worker_killed_mid_retrain_leaves_a_job_that_ends_cleanly(stack):
    with phase("worker container killed mid-retrain, job recovered"):
        job_id = stack.retrain("iris")["job_id"]

        def running() -> dict | None:
            job = stack.job(job_id)
            assert job["state"] in ("queued", "running"), job
            return job if job["state"] == "running" else None

        job = wait_for("the retrain to start", running, 120, every_s=0.3)
        host = job["worker"].split("@", 1)[1]
        victim = next(
            c for c in stack.containers("worker") if stack.inspect(c)["Config"]["Hostname"] == host
        )
        subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
        done = stack.finished(job_id)
        assert done["state"] == "succeeded", done
        assert done["attempts"] >= 2, done
        stack.up()  # the killed worker back
        assert len(stack.containers("worker")) == 2


# -- nothing is lost -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def before(stack) -> dict:
    state = snapshot(stack)
    assert len(state["jobs"]) == 4, state["jobs"]  # forced, two at once, the killed one
    assert {s for s, _, _ in state["jobs"].values()} == {"succeeded"}, state["jobs"]
    assert state["champions"] == {"housing": "2", "iris": "1"}, state
    return state


def nothing_lost(stack: Stack, before: dict) -> None:
    """Every job record, logged prediction, registry version and champion is still there."""
    after = snapshot(stack)  # it waits for every row predicted so far, later ones included
    assert after["jobs"] == before["jobs"]
    assert set(before["predictions"]) <= set(after["predictions"])
    assert after["versions"] == before["versions"]
    assert after["champions"] == before["champions"]
    serving_everywhere(stack, "housing", before["champions"]["housing"])
    assert stack.predict("iris")["model"]["version"] == before["champions"]["iris"]


def test_restart_keeps_jobs_predictions_versions_and_champions(stack, before):
    with phase("docker compose restart, then nothing lost"):
        stack.compose("restart", timeout=600)
        stack.up()
        nothing_lost(stack, before)


def test_down_and_up_keep_jobs_predictions_versions_and_champions(stack, before):
    with phase("docker compose down + up, then nothing lost"):
        stack.compose("down", timeout=600)
        stack.up()
        nothing_lost(stack, before)


def test_backup_of_the_running_stack_restores_into_a_fresh_one(stack, before):
    backup = stack.root / "backup"
    tool = ["python3", str(PROJECT_ROOT / "deploy" / "backup.py"), "--compose"]
    with phase("backup, down -v, restore into a fresh stack, up"):
        snapshot(stack)  # waits until every row predicted so far is in the log
        subprocess.run([*tool, "backup", str(backup)], env=stack.env, check=True, timeout=600)
        stack.compose("down", "-v", timeout=600)
        subprocess.run([*tool, "restore", str(backup)], env=stack.env, check=True, timeout=900)
        stack.up()
        nothing_lost(stack, before)
