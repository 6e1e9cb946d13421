"""`mlserve profile` and `mlserve drift`: reference statistics, captured requests, PSI.

Captured records are generated here in the shape the predictor's data capture writes (one JSON
line per request under capture/{model}/{version}/dt=YYYY-MM-DD/), from seeded generators: a
sample of the training distribution must flag nothing, a sample with one shifted feature must
flag that feature and only it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from components.compatibility import model_metadata
from mlserve import drift
from mlserve.cli import main
from mlserve.local.aws import MotoServer
from mlserve.train import TrainResult, load_example_data, split
from runtime import contract
from runtime.modelfile import sha256_file
from tests.infra.conftest import train_tiny_model

FEATURES = ("income", "age", "balance", "visits", "score")
TRAIN_ROWS = 20_000
CAPTURE_ROWS = 3_000
MISSING_RATE = 0.05  # of "score"


def population(rng: np.random.Generator, rows: int, **changes: Any) -> np.ndarray:
    """Rows of the five features: lognormal, normal, uniform, a small count, a normal with
    missing values. ``shift_<feature>`` adds that many standard deviations to a feature;
    ``missing`` sets the missing rate of "score"."""
    columns = {
        "income": rng.lognormal(10, 0.5, rows),
        "age": rng.normal(40, 12, rows),
        "balance": rng.uniform(0, 5000, rows),
        "visits": rng.poisson(2, rows).astype(float),
        "score": rng.normal(600, 50, rows),
    }
    sd = {"income": float(np.std(columns["income"])), "age": 12, "balance": 1443, "visits": 1.4}
    sd["score"] = 50
    for name in FEATURES:
        columns[name] = columns[name] + changes.get(f"shift_{name}", 0) * sd[name]
    missing = rng.random(rows) < changes.get("missing", MISSING_RATE)
    columns["score"][missing] = np.nan
    return np.column_stack([columns[name] for name in FEATURES])


def write_csv(path: Path, matrix: np.ndarray, names: Sequence[str], label: bool = True) -> Path:
    header = [*names, "label"] if label else list(names)
    lines = [",".join(header)]
    for row in matrix:
        cells = ["" if np.isnan(v) else repr(float(v)) for v in row]
        lines.append(",".join([*cells, "1"] if label else cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def capture_records(
    matrix: np.ndarray,
    names: Sequence[str],
    rng: np.random.Generator,
    version: str = "v1",
) -> list[dict[str, Any]]:
    """The capture records of requests of 1-20 rows each, in issue 17's schema."""
    records, start = [], 0
    while start < len(matrix):
        size = int(rng.integers(1, 21))
        rows = matrix[start : start + size]
        start += size
        records.append(
            {
                "request_id": str(uuid.UUID(int=int(rng.integers(0, 2**63)))),
                "time": datetime(2026, 12, 4, 12, 0, tzinfo=UTC).isoformat(),
                "model": "example",
                "versions": {version: [0.5] * len(rows)},
                "served_version": version,
                "features": [[None if np.isnan(v) else float(v) for v in row] for row in rows],
                "feature_names": list(names),
                "latency_ms": 3.2,
            }
        )
    return records


def write_capture(root: Path, records: list[dict[str, Any]], day: str = "2026-12-04") -> Path:
    """Records as JSON lines under capture/example/v1/dt=<day>/, in two files."""
    folder = root / "capture" / "example" / "v1" / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    half = len(records) // 2
    for n, part in enumerate((records[:half], records[half:])):
        (folder / f"part-{n}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return root / "capture"


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model of the five features and its metadata.json, profiled by `mlserve profile` from
    a CSV of its training data (with a label column the profile ignores)."""
    root = tmp_path_factory.mktemp("profiled")
    model = train_tiny_model(root / "model", FEATURES)
    data = write_csv(root / "train.csv", population(np.random.default_rng(1), TRAIN_ROWS), FEATURES)
    assert main(["profile", "--data", str(data), "--model", str(model)]) == 0
    return model.parent / contract.MODEL_METADATA_NAME


def run_drift(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["drift", *argv])
    return status, capsys.readouterr().out


def flagged(out: str) -> set[str]:
    return {line.split("│")[1].strip() for line in out.splitlines() if "DRIFT" in line}


# --- profile -------------------------------------------------------------------------------------


def test_profile_records_quantile_bins_missing_rate_and_count(profiled: Path) -> None:
    metadata = json.loads(profiled.read_text())
    assert metadata["sha256"] == sha256_file(profiled.parent / "model.ubj")
    reference = metadata["reference"]
    assert (reference["rows"], reference["bins"]) == (TRAIN_ROWS, 10)
    assert set(reference["features"]) == set(FEATURES)
    age = reference["features"]["age"]
    assert len(age["edges"]) == 9 and age["edges"] == sorted(age["edges"])
    assert age["edges"][4] == pytest.approx(40, abs=1)  # the median of N(40, 12)
    assert age["proportions"] == pytest.approx([0.1] * 10, abs=0.002)
    assert (age["missing_rate"], age["count"]) == (0, TRAIN_ROWS)
    visits = reference["features"]["visits"]  # a count: repeated quantiles merge
    assert len(visits["edges"]) < 9 and sum(visits["proportions"]) == pytest.approx(1)
    score = reference["features"]["score"]
    assert score["missing_rate"] == pytest.approx(MISSING_RATE, abs=0.01)
    assert score["count"] == round(TRAIN_ROWS * (1 - score["missing_rate"]))


def test_profile_keeps_the_other_metadata_and_refuses_another_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = train_tiny_model(tmp_path / "m", FEATURES)
    metadata = model.parent / "metadata.json"
    metadata.write_text(json.dumps({"metrics": {"auc": 0.9}, "sha256": sha256_file(model)}))
    data = write_csv(tmp_path / "t.csv", population(np.random.default_rng(3), 500), FEATURES)
    assert main(["profile", "--data", str(data), "--model-dir", str(model.parent)]) == 0
    written = json.loads(metadata.read_text())
    assert written["metrics"] == {"auc": 0.9} and set(written["reference"]["features"]) == set(
        FEATURES
    )
    metadata.write_text(json.dumps({"sha256": "0" * 64}))
    assert main(["profile", "--data", str(data), "--model", str(model)]) == 1
    assert "describes another model" in capsys.readouterr().err


def test_profile_reads_parquet_and_names_a_missing_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = train_tiny_model(tmp_path / "m", FEATURES)
    matrix = population(np.random.default_rng(4), 1000)
    pq.write_table(
        pa.table({name: matrix[:, i] for i, name in enumerate(FEATURES)}), tmp_path / "t.parquet"
    )
    assert main(["profile", "--data", str(tmp_path / "t.parquet"), "--model", str(model)]) == 0
    reference = json.loads((model.parent / "metadata.json").read_text())["reference"]
    assert reference["rows"] == 1000
    pq.write_table(pa.table({"income": matrix[:, 0]}), tmp_path / "partial.parquet")
    assert main(["profile", "--data", str(tmp_path / "partial.parquet"), "--model", str(model)])
    assert "no column for feature(s) age, balance, visits, score" in capsys.readouterr().err


def test_a_metadata_json_with_a_reference_is_still_deployed_as_before(profiled: Path) -> None:
    model = profiled.parent / "model.ubj"
    deployed = model_metadata(model, "tiny", "v1", sha256_file(model))
    recorded = json.loads(profiled.read_text())
    assert deployed["reference"] == recorded["reference"]
    assert deployed["feature_names"] == list(FEATURES)


# --- drift ---------------------------------------------------------------------------------------


def test_a_sample_of_the_training_distribution_flags_nothing(
    profiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(11)
    records = capture_records(population(rng, CAPTURE_ROWS), FEATURES, rng)
    source = write_capture(tmp_path, records)
    chart = tmp_path / "drift.png"
    status, out = run_drift(
        capsys, str(source), "--metadata", str(profiled), "--chart", str(chart), "--fail-on-drift"
    )
    assert status == 0, out
    assert flagged(out) == set()
    assert "no feature drifted (PSI > 0.2) in 2 file(s)" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reference = drift.reference_of(json.loads(profiled.read_text()))
    capture = drift.read_capture(str(source), list(reference))
    assert len(capture.rows) == CAPTURE_ROWS and capture.skipped == 0
    assert max(r.psi for r in drift.compare(reference, capture)) < 0.05


def test_a_shifted_feature_is_flagged_and_only_it(
    profiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(12)
    records = capture_records(population(rng, CAPTURE_ROWS, shift_age=1.0), FEATURES, rng)
    source = write_capture(tmp_path, records)
    argv = [str(source), "--metadata", str(profiled), "--chart", str(tmp_path / "d.png")]
    status, out = run_drift(capsys, *argv, "--fail-on-drift")
    assert status == drift_exit_status()
    assert flagged(out) == {"age"}
    assert "1 of 5 features drifted (PSI > 0.2): age" in out
    assert run_drift(capsys, *argv)[0] == 0  # flagged, but not asked to fail
    # a higher threshold is a flag away
    assert flagged(run_drift(capsys, *argv, "--threshold", "5")[1]) == set()


def drift_exit_status() -> int:
    from mlserve.commands.drift import EXIT_DRIFT

    assert EXIT_DRIFT not in (0, 1)  # distinct from success and from an error
    return EXIT_DRIFT


def test_more_missing_values_are_drift(profiled: Path) -> None:
    rng = np.random.default_rng(13)
    reference = drift.reference_of(json.loads(profiled.read_text()))
    capture = drift.Capture(FEATURES)
    records = capture_records(population(rng, CAPTURE_ROWS, missing=0.4), FEATURES, rng)
    drift.add_records(capture, (json.dumps(r) for r in records))
    results = {r.name: r for r in drift.compare(reference, capture)}
    assert results["score"].drifted and results["score"].missing_rate == pytest.approx(0.4, 0.1)
    assert {name for name, r in results.items() if r.drifted} == {"score"}


def test_the_reader_tolerates_other_lines_orders_and_filters(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    matrix = population(rng, 40)
    records = capture_records(matrix, FEATURES, rng)
    reordered = list(reversed(FEATURES))  # another column order, by name
    records[0]["features"] = [list(reversed(row)) for row in records[0]["features"]]
    records[0]["feature_names"] = reordered
    other = capture_records(population(rng, 5), FEATURES, rng, version="v2")
    lines = [json.dumps(r) for r in records + other]
    lines += [
        "not json",
        json.dumps({"request_id": "x"}),  # no features
        json.dumps({"features": [[1.0, 2.0]], "feature_names": list(FEATURES)}),  # short row
        json.dumps({"features": [["a"] * 5], "feature_names": list(FEATURES)}),  # not numbers
        "",
    ]
    capture = drift.Capture(FEATURES)
    drift.add_records(capture, lines, served_version="v1")
    assert (capture.records, capture.skipped) == (len(records), 4)
    np.testing.assert_array_equal(capture.matrix(), matrix)  # NaN == NaN here
    folder = tmp_path / "capture" / "example" / "v1"
    write_capture(tmp_path, records[:2], day="2026-12-01")
    write_capture(tmp_path, records[2:], day="2026-12-03")
    since = drift.read_capture(str(folder), FEATURES, since="2026-12-02")
    assert since.records == len(records) - 2 and since.files == 2


def test_drift_reads_an_s3_prefix(profiled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    rng = np.random.default_rng(15)
    records = capture_records(population(rng, 500, shift_income=2.0), FEATURES, rng)
    reference = drift.reference_of(json.loads(profiled.read_text()))
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        key = "capture/example/v1/dt=2026-12-04/part-0.jsonl"
        s3.put_object(Bucket="models", Key=key, Body="\n".join(json.dumps(r) for r in records))
        s3.put_object(Bucket="models", Key="capture/example/v1/README.txt", Body="not a capture")
        capture = drift.read_capture("s3://models/capture/example/v1/", FEATURES, s3=s3)
    assert (capture.files, len(capture.rows)) == (1, 500)
    assert [r.name for r in drift.compare(reference, capture) if r.drifted] == ["income"]


def test_drift_reads_the_emulators_bucket(
    profiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(16)
    records = capture_records(population(rng, 1000, shift_balance=1.0), FEATURES, rng)
    with MotoServer(set_environment=False) as server:
        s3 = drift_s3(server.endpoint_url)
        s3.create_bucket(Bucket="model-store")
        s3.put_object(
            Bucket="model-store",
            Key="capture/example/v1/dt=2026-12-04/a.jsonl",
            Body="\n".join(json.dumps(r) for r in records),
        )
        status, out = run_drift(
            capsys,
            "s3://model-store/capture/example/",
            "--endpoint-url",
            server.endpoint_url,
            "--metadata",
            str(profiled),
            "--chart",
            str(tmp_path / "c.png"),
        )
    assert status == 0 and flagged(out) == {"balance"}


def drift_s3(endpoint_url: str) -> Any:
    from mlserve.commands.drift import s3_client

    return s3_client(endpoint_url)


def test_drift_without_reference_or_records_says_what_to_do(
    tmp_path: Path, profiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "metadata.json"
    bare.write_text(json.dumps({"feature_names": list(FEATURES)}))
    (tmp_path / "empty").mkdir()
    status = main(["drift", str(tmp_path / "empty"), "--metadata", str(bare)])
    assert status == 1 and "mlserve profile --data" in capsys.readouterr().err
    status = main(["drift", str(tmp_path / "empty"), "--metadata", str(profiled)])
    assert status == 1 and "no captured rows" in capsys.readouterr().err


# --- the example model ---------------------------------------------------------------------------


def test_train_example_records_the_reference_and_its_own_rows_do_not_drift(
    example_model: TrainResult, tmp_path: Path
) -> None:
    metadata = json.loads(example_model.metadata_path.read_text())
    reference = drift.reference_of(metadata)
    assert list(reference) == metadata["feature_names"] and len(reference) == 30
    data = load_example_data()
    train_idx, _ = split(data)
    assert {r.count for r in reference.values()} == {len(train_idx)}
    rng = np.random.default_rng(17)
    sample = data.x[rng.choice(train_idx, size=4000, replace=True)]
    capture = drift.Capture(tuple(data.feature_names))
    drift.add_records(
        capture, (json.dumps(r) for r in capture_records(sample, data.feature_names, rng))
    )
    assert [r.name for r in drift.compare(reference, capture) if r.drifted] == []
    shifted = sample.copy()
    column = data.feature_names.index("mean_radius")
    shifted[:, column] += data.x[:, column].std()
    capture = drift.Capture(tuple(data.feature_names))
    drift.add_records(
        capture, (json.dumps(r) for r in capture_records(shifted, data.feature_names, rng))
    )
    assert [r.name for r in drift.compare(reference, capture) if r.drifted] == ["mean_radius"]


def test_psi_of_equal_distributions_is_zero_and_grows_with_the_difference() -> None:
    even = [0.25] * 4
    assert drift.psi(even, even) == 0
    near, far = [0.3, 0.2, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]
    assert 0 < drift.psi(even, near) < drift.psi(even, far)
    # (a - e) ln(a / e) summed, by hand for two bins
    assert drift.psi([0.5, 0.5], [0.8, 0.2]) == pytest.approx(
        0.3 * np.log(0.8 / 0.5) + (-0.3) * np.log(0.2 / 0.5)
    )


def test_profile_skips_categorical_features_and_drift_reads_the_numeric_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow.parquet as pq

    from tests import model_zoo

    model_zoo.save("categorical", tmp_path / "m")
    table, _label = model_zoo.categorical_table()
    pq.write_table(table, tmp_path / "train.parquet")
    argv = ["profile", "--data", str(tmp_path / "train.parquet"), "--model-dir"]
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "m")]) == 0
    assert "not profiled (categorical): color" in capsys.readouterr().out
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert list(metadata["reference"]["features"]) == ["x"]
    assert metadata["feature_names"] == ["x", "color"]
    model = tmp_path / "m" / "model.json"
    assert (
        model_metadata(model, "cat", "v1", sha256_file(model))["reference"]
        == (metadata["reference"])
    )
