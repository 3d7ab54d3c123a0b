"""What each served model is: names, features, target and how it is judged (the contract)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeatureSpec:
    """One input field: name, unit and the physically possible range (None = unbounded)."""

    name: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    example: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """A served model: its short name, registered name, task, features and primary metric."""

    name: str
    registered_name: str
    task: str  # "regression" or "classification"
    features: tuple[FeatureSpec, ...]
    primary_metric: str
    greater_is_better: bool
    classes: tuple[str, ...] = field(default_factory=tuple)
    unit: str | None = None

    @property
    def feature_names(self) -> list[str]:
        """Feature names in model input order."""
        return [f.name for f in self.features]

    def example_row(self) -> dict[str, float]:
        """A valid record, used for warm-up, docs and tests."""
        return {f.name: f.example for f in self.features}

    def beats(self, candidate: float, champion: float, min_improvement: float) -> bool:
        """True when the candidate is strictly better than the champion by min_improvement."""
        gain = candidate - champion if self.greater_is_better else champion - candidate
        return gain > 0 and gain >= min_improvement


HOUSING = ModelSpec(
    name="housing",
    registered_name="CaliforniaHousingBestModel",
    task="regression",
    features=(
        FeatureSpec("MedInc", "median income in block group (10k USD)", 0.0, None, 8.3252),
        FeatureSpec("HouseAge", "median house age in block group (years)", 0.0, None, 41.0),
        FeatureSpec("AveRooms", "average rooms per household", 0.0, None, 6.984127),
        FeatureSpec("AveBedrms", "average bedrooms per household", 0.0, None, 1.02381),
        FeatureSpec("Population", "block group population", 0.0, None, 322.0),
        FeatureSpec("AveOccup", "average household members", 0.0, None, 2.555556),
        FeatureSpec("Latitude", "block group latitude (degrees)", -90.0, 90.0, 37.88),
        FeatureSpec("Longitude", "block group longitude (degrees)", -180.0, 180.0, -122.23),
    ),
    primary_metric="rmse",
    greater_is_better=False,
    unit="100k USD",
)

IRIS = ModelSpec(
    name="iris",
    registered_name="IrisBestModel",
    task="classification",
    features=(
        FeatureSpec("sepal_length", "sepal length (cm)", 0.0, None, 5.1),
        FeatureSpec("sepal_width", "sepal width (cm)", 0.0, None, 3.5),
        FeatureSpec("petal_length", "petal length (cm)", 0.0, None, 1.4),
        FeatureSpec("petal_width", "petal width (cm)", 0.0, None, 0.2),
    ),
    primary_metric="accuracy",
    greater_is_better=True,
    classes=("setosa", "versicolor", "virginica"),
)

MODEL_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (HOUSING, IRIS)}

ALIAS_CHAMPION = "champion"
ALIAS_PREVIOUS = "previous"
ALIAS_CHALLENGER = "challenger"


def get_spec(name: str) -> ModelSpec:
    """The spec of a served model; KeyError for an unknown name."""
    return MODEL_SPECS[name]
