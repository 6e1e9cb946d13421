"""Categorical features: the categories a model was trained with, and the recoding of values.

XGBoost's native categorical support (``enable_categorical=True``) splits on category *codes*:
the position of a value in the list of categories the training data had. XGBoost 3.1 and later
store that list in the model (``learner.gradient_booster.model.cats`` of the JSON/UBJSON
document) when the model is trained on a DataFrame or Arrow table with categorical columns, and
recode a DataFrame at predict time with it. mlserve does the same recoding without pandas or
Arrow (neither is in the Lambda layer): :func:`model_categories` reads the stored lists and
:class:`Categories` maps a request's value to its code.

Where a model stores no categories (XGBoost < 3.1, or trained on a matrix of codes), its
categorical features take the codes themselves, as ``Booster.predict`` does.

Nothing here imports xgboost: the runtime reads the model document it already has.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

CATEGORICAL: Final = "c"  # XGBoost's feature type of a categorical feature
CategoryValue = str | float
# mlserve:unknownCategory / UNKNOWN_CATEGORY: what a value outside the model's categories is.
UNKNOWN_ERROR: Final = "error"  # a 400 naming the feature and the value (the default)
UNKNOWN_MISSING: Final = "missing"  # scored as a missing value (the split's default direction)
UNKNOWN_CATEGORY_MODES: Final = (UNKNOWN_ERROR, UNKNOWN_MISSING)


class CategoryError(ValueError):
    """A value that is not one of the feature's categories, or not a category at all."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Categories:
    """The categories of one feature, in code order (code = position in ``values``)."""

    feature: str
    values: tuple[CategoryValue, ...]
    _codes: Mapping[Any, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"feature {self.feature!r} has no categories")
        kinds = {type(v) is str for v in self.values}
        if len(kinds) != 1:
            raise ValueError(f"feature {self.feature!r} mixes string and number categories")
        codes: dict[Any, int] = {}
        for code, value in enumerate(self.values):
            key = value if isinstance(value, str) else float(value)
            if key in codes:
                raise ValueError(f"feature {self.feature!r} repeats category {value!r}")
            codes[key] = code
        object.__setattr__(self, "_codes", codes)

    @property
    def strings(self) -> bool:
        return isinstance(self.values[0], str)

    def describe(self, limit: int = 5) -> str:
        shown = ", ".join(repr(v) for v in self.values[:limit])
        more = f" and {len(self.values) - limit} more" if len(self.values) > limit else ""
        return f"{shown}{more}"

    def code(self, value: Any, *, unknown_missing: bool) -> float:
        """The code of ``value`` (a string, or a number for number categories); NaN for an
        unknown category when ``unknown_missing``. Raises :class:`CategoryError`."""
        key: Any
        if self.strings:
            if type(value) is not str:
                raise CategoryError(
                    "invalid_value",
                    f"is {_kind(value)} {value!r}, not a category name; "
                    f"its categories are {self.describe()}",
                )
            key = value if value in self._codes else value.strip()
        else:
            try:
                key = float(value.strip()) if type(value) is str else _number(value)
            except ValueError:
                raise CategoryError(
                    "invalid_value",
                    f"is {_kind(value)} {value!r}, not one of its categories {self.describe()}",
                ) from None
        code = self._codes.get(key)
        if code is not None:
            return float(code)
        if unknown_missing:
            return math.nan
        raise CategoryError(
            "unknown_category",
            f"has unknown category {value!r}; the model knows {len(self.values)}: "
            f"{self.describe()} (mlserve:unknownCategory missing scores an unknown category "
            "as missing)",
        )


def _number(value: Any) -> float:
    if type(value) not in (int, float):
        raise ValueError(value)
    return float(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return "an array" if isinstance(value, list) else "an object"


def model_categories(document: Mapping[str, Any], feature_names: Sequence[str]) -> dict[str, list]:
    """Feature name -> its categories, from a model's JSON document (``save_raw("json")``).

    Empty when the model stores none. XGBoost writes, per feature, ``{"offsets", "values"}``
    for string categories (UTF-8 bytes, ``offsets[i]:offsets[i+1]`` is category i) and
    ``{"values"}`` for number categories; a numerical feature's entry is empty. Raises
    ValueError for an encoding it cannot read (refused at deploy, named)."""
    model = document.get("learner", {}).get("gradient_booster", {}).get("model", {})
    cats = model.get("cats") if isinstance(model, Mapping) else None
    if not isinstance(cats, Mapping) or not cats.get("enc"):
        return {}
    encoded = cats["enc"]
    if not isinstance(encoded, list) or len(encoded) != len(feature_names):
        raise ValueError(
            f"the model stores categories for {len(encoded)} features but has {len(feature_names)}"
        )
    found: dict[str, list[CategoryValue]] = {}
    for name, entry in zip(feature_names, encoded, strict=True):
        if not isinstance(entry, Mapping):
            raise ValueError(f"feature {name!r}: categories stored as {type(entry).__name__}")
        values = entry.get("values") or []
        if not values:
            continue
        offsets = entry.get("offsets")
        if offsets:
            data = bytes(int(b) & 0xFF for b in values)
            found[name] = [data[lo:hi].decode("utf-8") for lo, hi in itertools.pairwise(offsets)]
        else:
            found[name] = [float(v) for v in values]
    return found


def categories_by_feature(
    feature_names: Sequence[str],
    feature_types: Sequence[str] | None,
    recorded: Mapping[str, Sequence[CategoryValue]] | None,
) -> dict[str, Categories]:
    """The :class:`Categories` of every categorical feature with recorded categories.

    ``recorded`` comes from the model (:func:`model_categories`) or metadata.json. Raises
    ValueError when it names a feature that is not categorical or holds no valid list."""
    if not recorded:
        return {}
    kinds = dict(zip(feature_names, feature_types or (), strict=False))
    result: dict[str, Categories] = {}
    for name, values in recorded.items():
        if kinds.get(name) != CATEGORICAL:
            raise ValueError(f"categories are recorded for {name!r}, which is not categorical")
        if not isinstance(values, list | tuple) or not all(
            type(v) in (str, int, float) for v in values
        ):
            raise ValueError(f"the categories of {name!r} are not a list of strings or numbers")
        result[name] = Categories(name, tuple(values))
    return result
