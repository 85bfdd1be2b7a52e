"""The enrollment benchmark's core on a tiny simulation: one seed, 20 species, 16-d
vectors, a narrow two-epoch ensemble; the record's structure and its invariants, and the
table it prints."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_enroll  # noqa: E402


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_enroll")
    return bench_enroll.run_seed(0, root, classes=20, dim=16, count_scale=1.0, epochs=2,
                                 hidden=64, say=lambda line: None)


def test_record_structure_and_invariants(record):
    assert sorted(record["k"]) == [1, 2, 4]
    n_trained = record["n_trained_test"]
    assert n_trained > 0 and record["n_unseen_test"] > 0
    assert len(record["trained_before"]) == n_trained
    assert len(record["poison_risk_before"]) == record["n_test"]
    for k, x in record["k"].items():
        assert x["n_species"] > 0 and x["n_enrolled_obs"] == k * x["n_species"]
        assert x["enrolled_in_model"] == x["n_species"]  # the loaded model answers them all
        # before/after trained top-1 on the same observations
        assert len(x["trained_after"]) == n_trained
        for m in bench_enroll.METHODS:
            h = x["methods"][m]
            assert len(h["top1"]) == len(h["r5"]) == x["n_test"]
            assert not (h["top1"] & ~h["r5"]).any()  # a top-1 hit is a top-5 hit
            for v in (h["top1"].mean(), h["r5"].mean()) if x["n_test"] else ():
                assert 0.0 <= v <= 1.0
        # no enrolled species without a poison status is answered edible
        assert x["no_status_as_edible"] == 0 and x["no_status_best_edible"] == 0
        assert x["enrolled_edible_after"].shape == x["enrolled_edible_before"].shape
        assert len(x["poison_risk_after"]) == len(x["poison_risk_stated"]) == record["n_test"]
        # the AUROC compares the same observations before and after
        assert x["auroc_before"].shape == x["auroc_after"].shape == x["auroc_positive"].shape
        assert x["auroc_positive"].sum() == x["n_still_unknown_test"]
        assert x["undo_restores"]
    # fewer species have more val observations to enroll from
    counts = [record["k"][k]["n_species"] for k in (1, 2, 4)]
    assert counts == sorted(counts, reverse=True)
    same = record["k"][4]["same_species"]
    assert same.all()  # every species enrolled at k=4 is one of those enrolled at every k
    assert record["k"][1]["same_species"].sum() == record["k"][4]["n_test"]


def test_table_prints_every_section_and_verdict(record):
    lines, verdicts = bench_enroll.table([record], reps=20)
    text = "\n".join(lines)
    for part in ("Recall@5", "Trained species", "Unknown AUROC", "Poison side",
                 "undo restores the answers of before exactly: yes", *bench_enroll.METHODS):
        assert part in text
    assert verdicts["poison"] and verdicts["undo"]
    assert ("FAIL" in text) == (not verdicts["trained_top1"])
    assert text.count("PASS") + text.count("FAIL") == 6  # trained top-1 and poison, per k


def test_ranking_and_nearest_neighbour_helpers():
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    classes = np.array([10, 20, 30])
    assert bench_enroll.ranking(scores, classes, 2).tolist() == [[20, 30], [10, 30]]
    refs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    top = bench_enroll._nn_ranking(np.array([[0.0, 1.0]]), refs, np.array([1, 2, 1]))
    assert top.tolist() == [[2, 1]]
