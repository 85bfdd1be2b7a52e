"""The default install stays CPU-only: GPU FAISS and CUDA wheels are opt-in extras."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
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
