"""The model cache with a fake registry: swaps, warm-up checks, load failures, readiness."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sklearn.dummy import DummyClassifier, DummyRegressor

from app.model_cache import MAX_RETRY_SECONDS, ModelCache, ModelLoadError, build_served_model
from core.registry import VersionInfo
from core.specs import HOUSING, IRIS
from tests.procs import wait_until


def iris_model(labels=IRIS.classes, strategy="prior"):
    x = np.tile(np.array([[5.1, 3.5, 1.4, 0.2]]), (3, 1))
    return DummyClassifier(strategy=strategy).fit(x, list(labels))


def housing_model(value: float = 2.0):
    return DummyRegressor(strategy="constant", constant=value).fit(np.zeros((2, 8)), [0, 0])


class NanRegressor:
    """A "model" whose predictions are NaN."""

    n_features_in_ = 8

    def predict(self, x):
        return np.full(len(x), np.nan)


class FakeRegistry:
    """champion() and load_model() over in-memory versions (with no compiled form); a version
    may be broken."""

    def __init__(self) -> None:
        self.champions: dict[str, str | None] = {}
        self.models: dict[tuple[str, str], object] = {}
        self.loads: list[tuple[str, str]] = []
        self.lookup_error: Exception | None = None

    def add(self, spec, version: str, model, champion: bool = True) -> None:
        self.models[(spec.registered_name, version)] = model
        if champion:
            self.champions[spec.registered_name] = version

    def champion(self, registered_name: str) -> VersionInfo | None:
        if self.lookup_error:
            raise self.lookup_error
        version = self.champions.get(registered_name)
        if version is None:
            return None
        tags = {"algorithm": "dummy", "metrics": '{"accuracy": 0.9}'}
        return VersionInfo(registered_name, version, "run-" + version, ["champion"], tags)

    def load_model(self, registered_name: str, version: str):
        self.loads.append((registered_name, version))
        model = self.models[(registered_name, version)]
        if isinstance(model, Exception):
            raise model
        return model

    def load_model_and_files(self, registered_name: str, version: str):
        return self.load_model(registered_name, version), {}


def reload_count(model: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("model_reloads_total", {"model": model, "outcome": outcome})
    return value or 0.0


@pytest.fixture
def fake() -> FakeRegistry:
    registry = FakeRegistry()
    registry.add(IRIS, "1", iris_model())
    registry.add(HOUSING, "1", housing_model())
    return registry


def test_first_refresh_loads_and_warms_every_model(fake):
    cache = ModelCache([IRIS, HOUSING], registry=fake)
    assert not cache.ready() and cache.get("iris") is None
    assert cache.refresh() == {"iris": "loaded", "housing": "loaded"}
    assert cache.ready()
    served = cache.get("iris")
    assert served.version == "1" and served.classes == IRIS.classes and served.has_proba
    assert served.ref == {
        "name": "iris",
        "registered_name": IRIS.registered_name,
        "version": "1",
        "alias": "champion",
    }
    assert cache.refresh() == {"iris": "unchanged", "housing": "unchanged"}
    assert len(fake.loads) == 2  # no reload while the alias stays put


def test_a_moved_alias_swaps_the_record(fake):
    cache = ModelCache([IRIS, HOUSING], registry=fake)
    cache.refresh()
    old = cache.get("iris")
    fake.add(IRIS, "2", iris_model(strategy="uniform"))
    assert cache.refresh()["iris"] == "loaded"
    assert cache.get("iris").version == "2"
    assert old.version == "1"  # records are immutable: a request holding the old one is safe
    fake.champions[IRIS.registered_name] = "1"  # rollback is just another move
    assert cache.refresh()["iris"] == "loaded" and cache.get("iris").version == "1"


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_broken_new_version_keeps_the_old_one_serving(fake):
    clock = FakeClock()
    cache = ModelCache([IRIS, HOUSING], refresh_seconds=5, registry=fake, clock=clock)
    cache.refresh()
    before = reload_count("iris", "failure")
    fake.add(IRIS, "2", OSError("artifact is corrupt"))
    assert cache.refresh()["iris"] == "failure"
    assert cache.get("iris").version == "1" and cache.ready()
    assert "artifact is corrupt" in cache.status()["iris"]["last_error"]
    assert reload_count("iris", "failure") == before + 1
    # Back-off doubles from refresh_seconds: 5 s after the first failure, 10 s after the second.
    clock.now += 4.9
    assert cache.refresh()["iris"] == "backoff"
    clock.now += 0.1
    assert cache.refresh()["iris"] == "failure"
    clock.now += 9.9
    assert cache.refresh()["iris"] == "backoff"
    clock.now += 0.1
    assert cache.refresh()["iris"] == "failure"
    assert reload_count("iris", "failure") == before + 3
    # Capped: after many failures the wait is MAX_RETRY_SECONDS, not more.
    for _ in range(10):
        clock.now += MAX_RETRY_SECONDS
        assert cache.refresh()["iris"] == "failure"
    clock.now += MAX_RETRY_SECONDS - 0.1
    assert cache.refresh()["iris"] == "backoff"
    # Fixing the champion (a new good version) recovers at once, back-off or not.
    fake.add(IRIS, "3", iris_model())
    assert cache.refresh()["iris"] == "loaded"
    assert cache.status()["iris"]["last_error"] is None


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (iris_model(labels=("a", "b", "c")), "classes"),
        (NanRegressor(), "not finite"),
        (DummyRegressor().fit(np.zeros((2, 3)), [0, 0]), "features"),
    ],
)
def test_warm_up_rejects_unusable_models(model, message):
    spec = IRIS if isinstance(model, DummyClassifier) else HOUSING
    info = VersionInfo(spec.registered_name, "9", "run", ["champion"], {})
    with pytest.raises(ModelLoadError, match=message):
        build_served_model(spec, info, model)


def test_registry_outage_keeps_serving(fake):
    cache = ModelCache([IRIS, HOUSING], registry=fake)
    cache.refresh()
    fake.lookup_error = ConnectionError("registry down")
    assert cache.refresh() == {"iris": "registry-error", "housing": "registry-error"}
    assert cache.ready() and cache.get("housing").version == "1"


def test_no_champion_means_not_ready(fake):
    fake.champions[HOUSING.registered_name] = None
    cache = ModelCache([IRIS, HOUSING], registry=fake)
    assert cache.refresh()["housing"] == "no-champion"
    assert not cache.ready() and cache.get("iris") is not None


def test_background_thread_picks_up_changes_and_calls_on_first_ready(fake):
    became_ready = threading.Event()
    cache = ModelCache(
        [IRIS, HOUSING], refresh_seconds=0.05, registry=fake, on_first_ready=became_ready.set
    )
    cache.start()
    try:
        assert cache.wait_ready(30) and became_ready.wait(30)
        fake.add(IRIS, "2", iris_model())
        wait_until(lambda: cache.get("iris").version == "2", 30, "the refresher to load v2")
    finally:
        cache.stop()
