"""The default install stays CPU-only (GPU FAISS and CUDA wheels are opt-in extras) and lean:
scikit-learn and scipy are extras, and the user's path runs with them unimportable."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
GPU_ONLY = re.compile(r"^(faiss-gpu|nvidia-|cupy|cuda|torch-cuda|jax\[cuda)", re.IGNORECASE)


def _names(requirements):
    return [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip() for r in requirements]


def test_default_dependencies_have_no_gpu_packages():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    names = _names(project["dependencies"])
    assert "faiss-cpu" in names
    gpu = [n for n in names if GPU_ONLY.match(n)]
    assert gpu == [], f"GPU-only packages in the default dependencies: {gpu}"


def test_gpu_faiss_is_an_extra_and_no_other_extra_pulls_cuda():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert "faiss-gpu" in _names(extras["gpu"])
    for name, reqs in extras.items():
        if name != "gpu":
            assert not [n for n in _names(reqs) if GPU_ONLY.match(n)], name


# -- the runtime install leaves scikit-learn and scipy out ------------------------------------

OPTIONAL = ("sklearn", "scipy", "threadpoolctl", "joblib")  # scikit-learn and what it brings
BLOCK = f"""
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""


def _run_blocked(code: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_scikit_learn_and_scipy_are_extras_not_runtime_dependencies():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = {n.lower() for n in _names(project["dependencies"])}
    assert not runtime & {"scikit-learn", "sklearn", "scipy"}
    for extra in ("dev", "bench"):
        assert {"scikit-learn", "scipy"} <= set(_names(project["optional-dependencies"][extra])), extra


def test_the_blocker_blocks():
    r = _run_blocked("import sklearn", ROOT)
    assert r.returncode != 0 and "(blocked)" in r.stderr


def test_no_runtime_module_imports_scikit_learn_or_scipy_when_imported():
    code = """
import importlib, pkgutil
bad = []
for pkg in ("store", "heads", "retrieval", "embedder", "sporeprint"):
    mod = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
        if info.name.endswith(".__main__"):  # runs the CLI
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as e:
            if "(blocked)" in str(e):
                bad.append(f"{info.name}: {e}")
print("\\n".join(bad))
"""
    r = _run_blocked(code, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "", f"modules importing an optional package at import:\n{r.stdout}"


def test_calibrate_score_evaluate_and_report_run_without_scikit_learn_or_scipy(demo_world, tmp_path):
    """The user's path on the runtime install: calibration fit (temperature, Platt, poison
    prior, the detector's AUROC), scoring, the official metrics and the report, whose map
    falls back to PCA and says so."""
    from conftest import copy_folder

    demo = copy_folder(demo_world["dir"], tmp_path / "demo")
    data = demo / "data"
    code = f"""
import contextlib, io, json
import numpy as np
from sporeprint.cli import main
from store import FeatureStore
store = {str(demo / "fungi.duckdb")!r}
with FeatureStore(store, read_only=True) as fs:  # the ensemble on the simulated vectors
    run = fs.runs_of("ensemble", "sim")[0]
assert main(["calibrate", "--store", store, "--run", run]) == 0
assert main(["score", "--store", store, "--run", run, "--metadata", {str(data / "test_2024.csv")!r},
             "--embeddings", {str(data / "embeddings_test.parquet")!r}, "--batch", "lean",
             "--out", "pred.csv"]) == 0
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["evaluate", "--predictions", "pred.csv", "--truth",
                 {str(data / "test_2024_truth.csv")!r}, "--format", "json"]) == 0
assert main(["report", "--store", store, "--run", run, "--batch", "lean", "--out", "report.html",
             "--map-points", "300"]) == 0
from heads.calibration import PoisonFusion
rng = np.random.default_rng(0)
y = rng.random(200) < 0.3
fusion = PoisonFusion().fit(np.clip(rng.random(200) * 0.5 + 0.4 * y, 0, 1), rng.normal(size=200) + y, y)
print("RESULT", json.dumps({{"scores": json.loads(out.getvalue()), "fusion": fusion.get_state()}}))
"""
    r = _run_blocked(code, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.rsplit("RESULT ", 1)[1])
    assert 0 <= result["scores"]["macro_f1"] <= 100 and result["scores"]["n"] > 0
    assert np.isfinite(result["fusion"]["coef_mass"]) and result["fusion"]["coef_mass"] > 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "PCA map of training embeddings" in page
    assert "the t-SNE map needs scikit-learn" in page
    assert "t-SNE map of training embeddings" not in page


def test_simulator_baselines_without_scikit_learn_fail_in_one_line_naming_the_extra():
    code = """
from sporeprint.errors import SporeprintError
from sporeprint.simulator.baselines import _sklearn_models
try:
    _sklearn_models()
except SporeprintError as e:
    print(e)
"""
    r = _run_blocked(code, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines() == [
        'the LDA and logistic-regression baselines need scikit-learn; install it with '
        'pip install "sporeprint[bench]"']
