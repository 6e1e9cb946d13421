"""The onnx engine's Lambda layer (runtime/requirements-onnx.txt, issue 8).

Fast tests pin the requirements and the strip rules for onnxruntime; the ``slow`` ones build the
real layer for arm64 and x86_64 with pip (cached in ``.cache/layers`` like the xgboost layers),
measure layer + function against the issue's 120 MB target, and run the x86_64 layer on
python3.12 with nothing but the layer and the function code: the runtime's onnx engine must load
and predict with no xgboost and no scipy anywhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from components.packaging import (
    ARCHITECTURES,
    LAYER_REQUIREMENTS,
    FunctionArchive,
    LayerBuild,
    build_function_archive,
    build_layer,
    check_size,
    human_mb,
    lambda_python,
)
from runtime.contract import ENGINE_ONNX, ENGINE_XGBOOST

from .test_packaging import (
    CONSTRAINTS,
    ELF_MACHINE,
    LAMBDA_RUNTIME_SDK,
    MIB,
    REPO,
    REQUIREMENTS,
    elf_machine,
    fake_pip,
    normalise,
    pyc_name,
    read_pins,
    zip_names,
)

ONNX_REQUIREMENTS = REPO / "runtime" / "requirements-onnx.txt"
TARGET_BYTES = 120 * MIB  # issue 8: layer + function unzipped, onnx engine


def test_each_engine_has_its_requirements() -> None:
    assert LAYER_REQUIREMENTS == {ENGINE_XGBOOST: REQUIREMENTS, ENGINE_ONNX: ONNX_REQUIREMENTS}


def test_onnx_pins_equal_constraints() -> None:
    layer, constraints = read_pins(ONNX_REQUIREMENTS), read_pins(CONSTRAINTS)
    assert "onnxruntime" in layer
    missing = sorted(set(layer) - set(constraints))
    assert not missing, f"onnx layer pins missing from constraints.txt: {missing}"
    differing = {n: (v, constraints[n]) for n, v in layer.items() if constraints[n] != v}
    assert not differing, f"onnx layer pin != constraints.txt pin: {differing}"


def test_onnx_layer_has_no_xgboost_no_scipy_no_boto3() -> None:
    pins = set(read_pins(ONNX_REQUIREMENTS))
    assert not pins & {"xgboost", "xgboost-cpu", "scipy", "boto3", "botocore"}
    # everything else the runtime needs from the xgboost layer is there too
    shared = set(read_pins(REQUIREMENTS)) - {"xgboost-cpu", "scipy"}
    assert shared <= pins


def test_onnxruntime_tooling_and_c_api_library_are_stripped(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("onnxruntime==1.0\n")
    tree = {
        "onnxruntime/__init__.py": b"",
        "onnxruntime/capi/_pybind_state.py": b"",
        "onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so": b"\x7fELF",
        "onnxruntime/capi/libonnxruntime_providers_shared.so": b"\x7fELF",
        "onnxruntime/capi/libonnxruntime.so.1.32.0": b"\x7fELF" * 100,
        "onnxruntime/transformers/optimizer.py": b"",
        "onnxruntime/quantization/quantize.py": b"",
        "onnxruntime/tools/convert.py": b"",
        "onnxruntime-1.0.dist-info/METADATA": b"Name: onnxruntime\n",
    }
    _, runner = fake_pip(tree)
    build = build_layer(requirements, "arm64", cache_dir=tmp_path / "cache", runner=runner)
    assert zip_names(build.zip_path) == sorted(
        [
            "python/onnxruntime-1.0.dist-info/METADATA",
            "python/onnxruntime/__init__.py",
            "python/" + pyc_name("onnxruntime/__init__.py"),
            "python/onnxruntime/capi/_pybind_state.py",
            "python/" + pyc_name("onnxruntime/capi/_pybind_state.py"),
            "python/onnxruntime/capi/libonnxruntime_providers_shared.so",
            "python/onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so",
        ]
    )


# --- the real onnx layers ------------------------------------------------------------------
slow = pytest.mark.slow
parametrize_arch = pytest.mark.parametrize("architecture", ARCHITECTURES)


@pytest.fixture(scope="session")
def onnx_layers() -> dict[str, LayerBuild]:
    return {a: build_layer(ONNX_REQUIREMENTS, a) for a in ARCHITECTURES}  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def function_archive(tmp_path_factory: pytest.TempPathFactory) -> FunctionArchive:
    return build_function_archive(REPO, tmp_path_factory.mktemp("function"))


@slow
def test_real_onnx_layers_meet_the_120_mb_target(
    onnx_layers: dict[str, LayerBuild],
    function_archive: FunctionArchive,
    capsys: pytest.CaptureFixture[str],
) -> None:
    xgboost_layers = {a: build_layer(REQUIREMENTS, a) for a in ARCHITECTURES}  # type: ignore[arg-type]
    lines = []
    for architecture, layer in onnx_layers.items():
        check_size(layer, function_archive)
        total = layer.unzipped_bytes + function_archive.unzipped_bytes
        reference = xgboost_layers[architecture].unzipped_bytes + function_archive.unzipped_bytes
        lines.append(
            f"{architecture:>7}: onnx layer {human_mb(layer.unzipped_bytes)} + function "
            f"{human_mb(function_archive.unzipped_bytes)} = {human_mb(total)} unzipped "
            f"(target {human_mb(TARGET_BYTES)}; xgboost engine {human_mb(reference)})"
        )
        assert total <= TARGET_BYTES, lines[-1]
        assert total < reference
    with capsys.disabled():
        print("\nonnx engine package sizes:\n" + "\n".join(lines))


@slow
@parametrize_arch
def test_real_onnx_layer_installs_exactly_the_pins_and_no_xgboost(
    architecture: str, onnx_layers: dict[str, LayerBuild]
) -> None:
    names = zip_names(onnx_layers[architecture].zip_path)
    installed = {
        normalise(match.group(1)): match.group(2)
        for name in names
        if (match := re.fullmatch(r"python/([^/]+)-([^/-]+)\.dist-info/METADATA", name))
    }
    assert installed == read_pins(ONNX_REQUIREMENTS)
    assert not [n for n in names if n.startswith(("python/xgboost", "python/scipy"))]
    assert not [n for n in names if n.split("/")[1] in LAMBDA_RUNTIME_SDK]  # boto3: the runtime's
    assert not [n for n in names if "libonnxruntime.so" in n]
    assert "python/onnxruntime/capi/onnxruntime_inference_collection.py" in names


@slow
@parametrize_arch
def test_real_onnx_layer_binaries_are_for_the_lambda_machine(
    architecture: str, onnx_layers: dict[str, LayerBuild]
) -> None:
    with zipfile.ZipFile(onnx_layers[architecture].zip_path) as archive:
        shared = [n for n in archive.namelist() if n.endswith(".so") or ".so." in n]
        assert any("onnxruntime_pybind11_state" in n for n in shared)
        wrong = []
        for name in shared:
            with archive.open(name) as handle:
                if elf_machine(handle.read(64)) != ELF_MACHINE[architecture]:
                    wrong.append(name)
    assert not wrong, f"shared objects for another machine: {wrong[:5]}"


ONNX_IMPORT_CHECK = """
import importlib.abc, json, os, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("xgboost", "scipy"):
            raise ImportError(name + " is not in the onnx layer")
sys.meta_path.insert(0, Block())
layer = os.environ["LAYER_DIR"]
import numpy as np
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from runtime.model import ModelCache
cache = os.environ["CACHE_DIR"]
class NoS3:
    def get_object(self, **kw):
        raise AssertionError("the model is in the cache")
model = ModelCache(os.environ["MODEL_URI"], os.environ["MODEL_SHA256"], NoS3,
                   __import__("pathlib").Path(cache), engine="onnx").get()
rows = np.asarray(json.loads(os.environ["ROWS"]), dtype=np.float32)
import onnxruntime
outside = sorted(
    name for name, module in list(sys.modules.items())
    if name.split(".")[0] in {"numpy", "onnxruntime", "aws_lambda_powertools", "google"}
    and getattr(module, "__file__", None) and not module.__file__.startswith(layer)
)
print(json.dumps({"onnxruntime": onnxruntime.__version__, "engine": model.info.engine,
                  "predictions": model.predict(rows).tolist(), "outside": outside}))
"""


@slow
def test_x86_64_onnx_layer_serves_the_model_on_python312(
    onnx_layers: dict[str, LayerBuild], function_archive: FunctionArchive, tmp_path: Path
) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip(f"the x86_64 layer cannot run on this {os.uname().machine} machine")
    python = lambda_python()  # the builder needed it too
    import numpy as np
    import xgboost as xgb

    from components.engine import convert_to_onnx
    from mlserve.train import train_example

    trained = train_example(out_dir=tmp_path / "model")
    cache = tmp_path / "cache"
    cache.mkdir()
    conversion = convert_to_onnx(trained.model_path, cache / "staged.onnx")
    (cache / "staged.onnx").rename(cache / f"{conversion.sha256}.onnx")
    rows = np.random.default_rng(0).normal(10, 5, size=(5, 30)).astype(np.float32)
    opt, task = tmp_path / "opt", tmp_path / "task"
    with zipfile.ZipFile(onnx_layers["x86_64"].zip_path) as archive:
        archive.extractall(opt)
    with zipfile.ZipFile(function_archive.zip_path) as archive:
        archive.extractall(task)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{task}{os.pathsep}{opt / 'python'}",
        "LAYER_DIR": str(opt / "python"),
        "CACHE_DIR": str(cache),
        "MODEL_URI": "s3://bucket/models/example/v1/model.onnx",
        "MODEL_SHA256": conversion.sha256,
        "ROWS": json.dumps(rows.tolist()),
        "POWERTOOLS_SERVICE_NAME": "mlserve-test",
    }
    result = subprocess.run(
        [python, "-S", "-c", ONNX_IMPORT_CHECK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["outside"] == []
    assert outcome["engine"] == "onnx"
    assert outcome["onnxruntime"] == read_pins(ONNX_REQUIREMENTS)["onnxruntime"]
    booster = xgb.Booster(model_file=str(trained.model_path))
    np.testing.assert_allclose(outcome["predictions"], booster.inplace_predict(rows), atol=1e-5)
