"""A damaged saved head gives one line naming the file, never a traceback."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from heads.classifier import Classifier
from heads.errors import HeadsError
from heads.modules import FusionConfig, LinearConfig, MLPConfig
from heads.train import TrainConfig

FEATURES = ["month_sin", "month_cos", "habitat_bog"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    M = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.integers(0, 3, 40) * 10
    clf = Classifier("mlp", {"hidden": 8}, TrainConfig(epochs=1, progress=False),
                     space="tiny", feature_names=FEATURES).fit(X, y, M, poisonous_classes=[10])
    return clf.save(tmp_path_factory.mktemp("heads") / "h")


def _weights(d):
    return load_file(str(d / "model.safetensors"))


def _save_weights(d, state):
    save_file(state, str(d / "model.safetensors"))


def _edit_config(d, change):
    meta = json.loads((d / "config.json").read_text())
    change(meta)
    (d / "config.json").write_text(json.dumps(meta))


def _truncate(f):
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _wrong_shape(d):
    state = _weights(d)
    name = next(k for k in state if k.endswith("species.weight"))
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    _save_weights(d, state)


def _missing_key(d):
    state = _weights(d)
    del state[next(k for k in state if k.endswith("poison.bias"))]
    _save_weights(d, state)


def _extra_key(d):
    _save_weights(d, {**_weights(d), "intruder.weight": torch.zeros(2)})


def _int_tensor(d):
    state = _weights(d)
    name = next(k for k in state if k.endswith("poison.bias"))
    state[name] = torch.zeros(state[name].shape, dtype=torch.int64)
    _save_weights(d, state)


def _non_finite(value):
    def corrupt(d):
        state = _weights(d)
        name = next(k for k in state if k.endswith("species.weight"))
        state[name] = state[name].clone()
        state[name][0, 0] = value
        _save_weights(d, state)
    return corrupt


CASES = {
    # weights
    "wrong tensor shape": ("model.safetensors", _wrong_shape),
    "missing tensor": ("model.safetensors", _missing_key),
    "extra tensor": ("model.safetensors", _extra_key),
    "integer tensor": ("model.safetensors", _int_tensor),
    "NaN weight": ("model.safetensors", _non_finite(float("nan"))),
    "infinite weight": ("model.safetensors", _non_finite(float("-inf"))),
    "pickle bytes": ("model.safetensors",
                     lambda d: torch.save({"w": torch.zeros(3)}, d / "model.safetensors")),
    "truncated weights": ("model.safetensors", lambda d: _truncate(d / "model.safetensors")),
    "empty weights": ("model.safetensors", lambda d: (d / "model.safetensors").write_bytes(b"")),
    # config.json
    "truncated config": ("config.json", lambda d: _truncate(d / "config.json")),
    "invalid json": ("config.json", lambda d: (d / "config.json").write_text("{'format': 1")),
    "not utf-8": ("config.json", lambda d: (d / "config.json").write_bytes(b"\xff\xfe{")),
    "json list": ("config.json", lambda d: (d / "config.json").write_text("[1, 2]")),
    "missing key": ("config.json", lambda d: _edit_config(d, lambda m: m.pop("classes"))),
    "dim a string": ("config.json", lambda d: _edit_config(d, lambda m: m.update(dim="8"))),
    "head not a dict": ("config.json", lambda d: _edit_config(d, lambda m: m.update(head=[]))),
    "unknown head kind": ("config.json", lambda d: _edit_config(d, lambda m: m["head"].update(kind="x"))),
    "hidden a string": ("config.json", lambda d: _edit_config(d, lambda m: m["head"].update(hidden="8"))),
    "unknown head setting": ("config.json",
                             lambda d: _edit_config(d, lambda m: m["head"].update(colour=1))),
    "head lacks embed_dim": ("config.json", lambda d: _edit_config(d, lambda m: m["head"].pop("embed_dim"))),
    "negative hidden": ("config.json", lambda d: _edit_config(d, lambda m: m["head"].update(hidden=-4))),
    "train epochs a string": ("config.json",
                              lambda d: _edit_config(d, lambda m: m["train"].update(epochs="2"))),
    "dropout above 1": ("config.json", lambda d: _edit_config(d, lambda m: m["head"].update(dropout=2))),
    "unknown_output a string": ("config.json", lambda d: _edit_config(
        d, lambda m: m["head"].update(unknown_output="yes"))),
    "train amp an int": ("config.json", lambda d: _edit_config(d, lambda m: m["train"].update(amp=1))),
    "train loss unknown": ("config.json",
                           lambda d: _edit_config(d, lambda m: m["train"].update(loss="nope"))),
    "class id a string": ("config.json",
                          lambda d: _edit_config(d, lambda m: m.update(classes=["0", "10", "20"]))),
    "poisonous flags as ints": ("config.json",
                                lambda d: _edit_config(d, lambda m: m.update(poisonous=[0, 1, 0]))),
    "too few classes": ("config.json", lambda d: _edit_config(d, lambda m: m.update(classes=[0, 10]))),
    "unsorted classes": ("config.json",
                         lambda d: _edit_config(d, lambda m: m.update(classes=[10, 0, 20]))),
    "dim disagrees with head": ("config.json", lambda d: _edit_config(d, lambda m: m.update(dim=9))),
    "feature names disagree": ("config.json",
                               lambda d: _edit_config(d, lambda m: m.update(feature_names=["a"]))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_head_raises_one_line_naming_the_file(case, saved, tmp_path):
    file_name, corrupt = CASES[case]
    d = tmp_path / "h"
    shutil.copytree(saved, d)
    Classifier.load(d)  # intact copy loads
    corrupt(d)
    with pytest.raises(HeadsError) as info:
        Classifier.load(d)
    message = str(info.value)
    assert "\n" not in message
    assert str(d / file_name) in message
    err = info.value  # no chained library exception under it
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


@pytest.mark.parametrize("config, setting", [
    (lambda: MLPConfig(embed_dim=8, num_classes=3, hidden="8"), "hidden='8'"),
    (lambda: MLPConfig(embed_dim=8, num_classes=3, norm="group"), "norm='group'"),
    (lambda: LinearConfig(embed_dim=0, num_classes=3), "embed_dim=0"),
    (lambda: LinearConfig(embed_dim=8, num_classes=3, input_norm=1), "input_norm=1"),
    (lambda: FusionConfig(embed_dim=8, num_classes=3, meta_dim=2, groups={"date": [2]}),
     "'date'"),
    (lambda: FusionConfig(embed_dim=8, num_classes=3, layers=0), "layers=0"),
    (lambda: TrainConfig(lr=float("nan")), "lr=nan"),
    (lambda: TrainConfig(patience=-1), "patience=-1"),
    (lambda: TrainConfig(device=0), "device=0"),
])
def test_each_config_dataclass_validates_its_own_settings(config, setting):
    with pytest.raises(HeadsError, match=re.escape(setting)):
        config().validate()


def test_valid_configs_pass_their_own_validate():
    for cfg in (LinearConfig(embed_dim=8, num_classes=1), MLPConfig(embed_dim=8, num_classes=2),
                FusionConfig(embed_dim=8, num_classes=2, meta_dim=2, groups={"date": [0, 1]}),
                TrainConfig(), TrainConfig(lr=np.float64(1e-3), seed=np.int64(3))):
        cfg.validate()


def test_a_nan_weight_is_refused_at_load_naming_the_file_and_the_fix(saved, tmp_path):
    d = tmp_path / "h"
    shutil.copytree(saved, d)
    _non_finite(float("nan"))(d)
    assert torch.isnan(_weights(d)[next(k for k in _weights(d) if k.endswith("species.weight"))]
                       ).sum() == 1  # the file on disk really holds one NaN
    with pytest.raises(HeadsError) as info:
        Classifier.load(d)
    message = str(info.value)
    assert message.startswith(f"{d / 'model.safetensors'}: tensor ")
    assert "species.weight holds 1 NaN or infinite values" in message
    assert "`sporeprint train`" in message and "\n" not in message
