"""The pinned-version cache on its own: resolution, verdicts, bounds and eviction order.

A fake registry at the unit seam (what core.registry answers); the real registry, loading and
HTTP are covered by test_pinning.py and the protocol tests.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsRegressor

from app.errors import ApiError
from app.model_cache import build_served_model
from app.version_cache import VersionCache, model_ref
from core import registry
from core.registry import VersionInfo
from core.specs import HOUSING
from tests.api.versions_support import FAILED, PASSED, regressor


@dataclass
class FakeRegistry:
    """Versions with their reports and models; counts every call the cache makes."""

    models: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # versions whose load raises
    down: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _check(self, what: str, version: str) -> None:
        self.calls.append((what, version))
        if self.down:
            raise ConnectionError("registry unreachable")

    def get_version(self, name: str, version: str) -> VersionInfo:
        self._check("get_version", version)
        if version not in self.models:
            raise registry.NotFound(version)
        return VersionInfo(name, version, run_id=f"run-{version}")

    def load_validation_report(self, name: str, version: str) -> dict[str, Any] | None:
        self._check("report", version)
        return self.reports.get(version)

    def load_model_and_files(self, name: str, version: str) -> tuple[Any, dict[str, bytes]]:
        self._check("load", version)
        if version in self.broken:
            raise OSError("artifact store unreachable")
        return self.models[version], {}  # no compiled form: scikit-learn serves

    def get_alias(self, name: str, alias: str) -> VersionInfo | None:
        self._check("alias", alias)
        version = self.aliases.get(alias)
        return VersionInfo(name, version, run_id=None) if version else None


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def champion_of(version: str) -> Any:
    served = build_served_model(
        HOUSING, VersionInfo(HOUSING.registered_name, version, None), regressor(9.0)
    )
    return lambda name: served if name == HOUSING.name else None


def cache_for(fake: FakeRegistry, clock: Clock | None = None, **limits: Any) -> VersionCache:
    return VersionCache(
        [HOUSING], champion_of("1"), registry=fake, clock=clock or Clock(), **limits
    )


def passed(*versions: str, value: float = 2.0) -> FakeRegistry:
    return FakeRegistry(
        models={v: regressor(value + int(v)) for v in versions},
        reports={v: PASSED for v in versions},
    )


def status_of(call: Any) -> int:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.code


def test_no_pin_and_champion_are_the_hot_swapped_record_without_a_registry_call():
    fake = passed("2")
    cache = cache_for(fake)
    for pin in (None, "champion", "1"):
        pinned = cache.get(HOUSING, pin)
        assert pinned.served.version == "1"
    assert cache.get(HOUSING, None).ref["alias"] == "champion"
    assert "alias" not in cache.get(HOUSING, "1").ref  # pinned by number: named by number
    assert fake.calls == []


def test_a_version_is_loaded_once_then_served_from_the_cache():
    fake = passed("2", "3")
    cache = cache_for(fake)
    first = cache.get(HOUSING, "2")
    again = cache.get(HOUSING, "2")
    assert first.served is again.served and first.served.version == "2"
    assert first.ref == model_ref(first.served, None)
    assert [c for c in fake.calls if c[0] == "load"] == [("load", "2")]
    x = np.asarray([list(HOUSING.example_row().values())])
    assert first.served.model.predict(x)[0] == 4.0  # value 2.0 + version 2: that model


@pytest.mark.parametrize("pin", ["0", "007", "-1", "1e3", "12345678901", "latest", "", "Champion"])
def test_what_names_no_version_is_404_without_asking_the_registry(pin: str):
    fake = passed("2")
    assert status_of(lambda: cache_for(fake).get(HOUSING, pin)) == 404
    assert fake.calls == []


def test_an_unregistered_number_is_404_and_not_remembered():
    fake = passed("2")
    cache = cache_for(fake)
    assert status_of(lambda: cache.get(HOUSING, "9")) == 404
    fake.models["9"], fake.reports["9"] = regressor(1.0), PASSED  # registered since
    assert cache.get(HOUSING, "9").served.version == "9"


@pytest.mark.parametrize(
    ("report", "model", "reason"),
    [
        (FAILED, regressor(1.0), "gate(s) max_rmse did not pass"),
        (None, regressor(1.0), "no validation report"),
        (PASSED, regressor(1.0, features=3), "load-time check"),
    ],
    ids=["failed-report", "no-report", "load-check"],
)
def test_failed_validation_is_409_with_the_reason_and_remembered(report, model, reason):
    fake = FakeRegistry(models={"4": model}, reports={"4": report} if report else {})
    cache = cache_for(fake)
    with pytest.raises(ApiError) as caught:
        cache.get(HOUSING, "4")
    assert caught.value.code == 409 and reason in caught.value.message
    calls = len(fake.calls)
    assert status_of(lambda: cache.get(HOUSING, "4")) == 409
    assert len(fake.calls) == calls  # the verdict cannot change: no second registry look


def test_a_version_the_gate_rejected_passed_validation_and_is_served():
    fake = passed("6")
    fake.reports["6"] = PASSED  # tags promoted=false / rejected_reason do not matter here
    assert cache_for(fake).get(HOUSING, "6").served.version == "6"


def test_registry_down_is_503_and_a_failed_load_waits_before_it_is_tried_again():
    fake = passed("2", "3")
    fake.broken.add("3")
    clock = Clock()
    cache = cache_for(fake, clock)
    fake.down = True
    assert status_of(lambda: cache.get(HOUSING, "2")) == 503
    fake.down = False
    assert status_of(lambda: cache.get(HOUSING, "3")) == 503
    loads = [c for c in fake.calls if c[0] == "load"]
    assert status_of(lambda: cache.get(HOUSING, "3")) == 503  # within the back-off: no load
    assert [c for c in fake.calls if c[0] == "load"] == loads
    fake.broken.clear()
    clock.now += 31
    assert cache.get(HOUSING, "3").served.version == "3"


def test_aliases_resolve_through_the_registry_for_at_most_alias_seconds():
    fake = passed("2", "3")
    fake.aliases = {"previous": "2"}
    clock = Clock()
    cache = cache_for(fake, clock, alias_seconds=5.0)
    pinned = cache.get(HOUSING, "previous")
    assert pinned.served.version == "2" and pinned.ref["alias"] == "previous"
    assert status_of(lambda: cache.get(HOUSING, "challenger")) == 404  # no such alias
    fake.aliases["previous"] = "3"
    assert cache.get(HOUSING, "previous").served.version == "2"  # still within 5 s
    clock.now += 5.01
    assert cache.get(HOUSING, "previous").served.version == "3"


def test_count_bound_evicts_the_least_recently_used():
    fake = passed("2", "3", "4")
    cache = cache_for(fake, max_versions=2)
    cache.get(HOUSING, "2")
    cache.get(HOUSING, "3")
    cache.get(HOUSING, "2")  # 3 is now the least recently used
    cache.get(HOUSING, "4")
    assert cache.status()["versions"] == ["housing:2", "housing:4"]
    cache.get(HOUSING, "3")  # loaded again
    assert [c for c in fake.calls if c[0] == "load"].count(("load", "3")) == 2


def test_memory_bound_evicts_until_the_budget_holds():
    # A nearest-neighbours model holds its training rows: about 1.3 MB each.
    rows = np.random.default_rng(0).random((20_000, 8))
    big = {v: KNeighborsRegressor(n_neighbors=1).fit(rows, rows[:, 0]) for v in "23"}
    fake = FakeRegistry(models=big, reports={v: PASSED for v in big})
    one = len(pickle.dumps(big["2"], protocol=pickle.HIGHEST_PROTOCOL))
    cache = cache_for(fake, max_versions=10, max_bytes=int(one * 1.5))
    cache.get(HOUSING, "2")
    cache.get(HOUSING, "3")
    status = cache.status()
    assert status["versions"] == ["housing:3"] and status["bytes"] <= status["max_bytes"]


def test_a_version_larger_than_the_budget_answers_but_is_not_kept():
    fake = passed("2")
    cache = cache_for(fake, max_bytes=10)
    assert cache.get(HOUSING, "2").served.version == "2"
    assert cache.status()["versions"] == [] and cache.status()["bytes"] == 0


def test_no_champion_loaded_is_503():
    cache = VersionCache([HOUSING], lambda name: None, registry=passed())
    assert status_of(lambda: cache.get(HOUSING, None)) == 503


def test_a_pinned_version_promoted_to_champion_is_not_kept_twice():
    fake = passed("2")
    champion = {"version": "1"}
    served = {
        v: build_served_model(
            HOUSING, VersionInfo(HOUSING.registered_name, v, None), regressor(9.0)
        )
        for v in "12"
    }
    cache = VersionCache([HOUSING], lambda name: served[champion["version"]], registry=fake)
    cache.get(HOUSING, "2")
    assert cache.status()["versions"] == ["housing:2"]
    champion["version"] = "2"  # the hot swap moved @champion to it
    assert cache.get(HOUSING, "2").served is served["2"]
    assert cache.status() == {**cache.status(), "versions": [], "bytes": 0}
