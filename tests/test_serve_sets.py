"""The prediction set where people look: `/api/identify` returns the answer's conformal
set (level, size, rank, members with their poison status and a thumbnail) and the page
shows it ("one of these N species, 90%"), poisonous members highlighted; heads without
a held-out calibration slice say why there is no set."""

from __future__ import annotations

import html
import json
import re

import pytest
from test_serve import post_json, request, serving

from heads.train import TrainConfig
from sporeprint.scoring import calibration as calib
from sporeprint.simulator.simulate import SimConfig, ingest_simulation, simulate, write_simulation
from sporeprint.training import train_folds
from store import FeatureStore

SEED = 2


@pytest.fixture(scope="module")
def holdout_store(tmp_path_factory):
    """A simulated store (vectors, no photo files) whose heads were trained with the
    calibration slice held out, so sets are promised at 90%."""
    root = tmp_path_factory.mktemp("serve-sets")
    sim = simulate(SimConfig(scale="small", classes=70, seed=SEED, dim=16, count_scale=0.3))
    files = write_simulation(sim, root / "sim")
    path = root / "s.duckdb"
    with FeatureStore(path) as fs:
        ingest_simulation(fs, files, "sim", SEED)
        cfg = TrainConfig(epochs=3, lr=3e-3, progress=False, seed=SEED)
        run = train_folds(fs, "sim", head="mlp", head_params={"hidden": 32}, config=cfg,
                          out_dir=root / "runs", split_seed=SEED, calibration="holdout")[-1].run_id
        calib.fit_and_record(fs, [run])
        obs = fs.sql("SELECT observation_id FROM observations o JOIN splits s USING "
                     "(observation_id) WHERE s.part = 'test' ORDER BY 1").column(0).to_pylist()
        poisonous = set(fs.poisonous_class_ids().tolist())
        taxa = {r["class_id"]: r for r in fs.species_table().to_pylist()}
    return {"path": path, "obs": obs, "poisonous": poisonous, "taxa": taxa}


def test_identify_returns_the_set_with_its_members_and_poison_status(holdout_store):
    with serving(holdout_store["path"]) as (url, _, service):
        model = service.model
        seen = {"genus": 0, "poison": 0, "several": 0}
        for obs in holdout_store["obs"][:40]:
            status, got = post_json(url, {"observation_id": obs, "k": 2})
            assert status == 200, got
            ps = got["prediction_set"]
            assert ps["coverage"] == 0.9 and ps["why"] is None
            members = ps["members"]
            assert ps["size"] == len(members) >= 1
            # the same set model.predict gives (and the predictions table would store)
            ids = [m["class_id"] for m in members]
            probs = [m["prob"] for m in members]
            assert probs == sorted(probs, reverse=True)  # most probable first
            for m in members:
                if m["class_id"] >= 0:
                    t = holdout_store["taxa"][m["class_id"]]
                    assert m["poisonous"] == t["poisonous"] and m["genus"] == t["genus"]
                    assert m["image_url"] is None or m["image_url"].startswith("/images/")
            held = [m for m in members if m["poisonous"]]
            assert ps["poisonous_members"] == held
            if held:  # the poison rule: a poisonous species in the set is never answered edible
                seen["poison"] += 1
                assert got["answer"]["class_id"] in holdout_store["poisonous"]
                assert got["answer"]["kind"] in ("poison_risk", "species")
            if ps["answer_rank"] == "genus":
                seen["genus"] += 1
                assert {m["genus"] for m in members} == {ps["genus"]}
            seen["several"] += len(ids) > 1
        assert seen["several"] and seen["poison"]
        assert model.coverage == 0.9


def test_the_page_shows_the_set_and_highlights_its_poisonous_members(holdout_store):
    with serving(holdout_store["path"]) as (url, _, _service):
        shown = 0
        for obs in holdout_store["obs"][:40]:
            status, got = post_json(url, {"observation_id": obs})
            ps = got["prediction_set"]
            if not ps["poisonous_members"] or ps["size"] < 2:
                continue
            status, _, body = request(f"{url}/?observation={obs}")
            page = body.decode()
            assert status == 200 and 'id="prediction-set"' in page
            line = html.unescape(re.search(r'<h2 id="set-line">(.*?)</h2>', page, re.S).group(1))
            word = "option" if ps["answer_rank"] == "unknown" else "species"
            assert f"One of these {ps['size']} {word}, 90%" in line
            block = page[page.index('id="prediction-set"'):page.index('<dl class="facts">')]
            assert block.count('<li class="card') == ps["size"]
            assert block.count('<li class="card poison-card">') == len(ps["poisonous_members"])
            assert block.count("⚠ POISONOUS") == len(ps["poisonous_members"])
            assert 'id="set-poison"' in block
            shown += 1
            if shown == 3:
                break
        assert shown


def test_heads_without_a_held_out_slice_say_why_there_is_no_set(tmp_path):
    from conftest import trained_store_cli

    store, _ = trained_store_cli(tmp_path, seed=1, score=False)  # default mode: oof
    with FeatureStore(store, read_only=True) as fs:
        obs = fs.sql("SELECT min(observation_id) FROM observations WHERE role = 'val'"
                     ).column(0)[0].as_py()
    with serving(store) as (url, _, _service):
        status, got = post_json(url, {"observation_id": obs})
        assert status == 200
        ps = got["prediction_set"]
        assert ps["members"] == [] and ps["size"] is None
        assert "--calibration holdout" in ps["why"]
        status, _, body = request(f"{url}/?observation={obs}")
        assert 'id="set-absent"' in body.decode()
        assert "--calibration holdout" in html.unescape(body.decode())
        json.dumps(got)  # plain JSON
