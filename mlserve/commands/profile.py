"""``mlserve profile``: record a model's reference statistics (for ``mlserve drift``) from its
training data, a CSV or Parquet file, in the metadata.json beside the model.

The columns named like the model's features (``f0``, ``f1``, ... for a model saved without
feature names) are profiled (mlserve/drift.py: quantile bin edges, the share of values per bin,
the missing-value rate, the count); categorical features and other columns (a label, an id) are
not. metadata.json keeps every other field; a metadata.json recording another model's
sha256 is refused, as `pulumi up` refuses it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlserve.commands.base import DEFAULT_MODEL_DIR, CliError, positive_int
from runtime import contract

NAME = "profile"
HELP = "record a model's reference statistics from its training data (for mlserve drift)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, required=True, help="the training data: a .csv or .parquet file"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--model", type=Path, metavar="PATH", help="a model.json or model.ubj file")
    where.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="a directory holding model.ubj or model.json (default: %(default)s)",
    )
    parser.add_argument(
        "--bins", type=positive_int, default=10, help="bins per feature (default: %(default)s)"
    )


def model_file(args: argparse.Namespace) -> Path:
    if args.model is not None:
        if not args.model.is_file():
            raise CliError(f"no model file {args.model}")
        return Path(args.model)
    for name in contract.MODEL_FILE_NAMES:
        candidate = Path(args.model_dir) / name
        if candidate.is_file():
            return candidate
    raise CliError(f"no model in {args.model_dir} ({' or '.join(contract.MODEL_FILE_NAMES)})")


def run(args: argparse.Namespace) -> int:
    from components.compatibility import ModelRefused, inspect_model, read_metadata_file
    from mlserve import drift
    from runtime.modelfile import sha256_file

    model = model_file(args)
    try:
        described = inspect_model(model)
    except ModelRefused as exc:
        raise CliError(str(exc)) from None
    names = list(described["feature_names"])
    types = list(described.get("feature_types") or ["float"] * len(names))
    # Categorical features (XGBoost type "c") have no quantiles: they are not profiled.
    categorical = [n for n, t in zip(names, types, strict=True) if t == "c"]
    feature_names = [n for n in names if n not in categorical]
    if not feature_names:
        raise CliError(f"{model} has no numeric feature to profile")
    sha256 = sha256_file(model)
    metadata_path = model.parent / contract.MODEL_METADATA_NAME
    try:
        metadata = read_metadata_file(metadata_path, model, sha256)
    except ModelRefused as exc:
        raise CliError(str(exc)) from None
    try:
        matrix = drift.read_table(args.data, feature_names)
        reference = drift.profile(matrix, feature_names, bins=args.bins)
    except drift.DriftError as exc:
        raise CliError(str(exc)) from None
    metadata.setdefault("sha256", sha256)
    metadata.setdefault("feature_names", names)
    metadata[drift.REFERENCE_KEY] = reference
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
    print(
        f"reference statistics of {len(feature_names)} features from {reference['rows']} rows "
        f"of {args.data} -> {metadata_path}"
    )
    if categorical:
        print(f"not profiled (categorical): {', '.join(categorical)}")
    return 0
