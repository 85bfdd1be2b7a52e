"""`sporeprint evaluate` on hand-computed submissions."""

import json

import pytest

from sporeprint.cli import main
from store.reference import poisonous_class_ids

POIS = [int(c) for c in poisonous_class_ids()[:2]]
EDIBLE = [c for c in range(20) if c not in set(poisonous_class_ids().tolist())][:3]


def _write(path, header, rows):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_evaluate_matches_hand_computed_scores(tmp_path, capsys):
    p, e = POIS[0], EDIBLE
    # obs 1: poisonous -> predicted unknown (cost 100); obs 2: edible -> poisonous (cost 1)
    # obs 3: unknown -> species e[1] (track1 error); obs 4: correct; obs 1 repeated: ignored
    truth = _write(tmp_path / "truth.csv", "observationID,class_id",
                   [(1, p), (2, e[0]), (3, -1), (4, e[2])])
    pred = _write(tmp_path / "pred.csv", "observation_id,class_id",
                  [(1, -1), (2, POIS[1]), (3, e[1]), (4, e[2]), (1, p)])
    assert main(["evaluate", "--predictions", str(pred), "--truth", str(truth),
                 "--format", "json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n"] == 4
    assert s["track1"] == pytest.approx(3 / 4)
    assert s["track2"] == pytest.approx(101 / 4)
    assert s["track3"] == pytest.approx(3 / 4 + 101 / 4)
    # track 4: species->unknown 0.1, unknown->species 10, one other species error 1
    assert s["track4"] == pytest.approx((0.1 + 10 + 1) / 4)
    assert s["poisonous_as_edible"] == 1 and s["edible_as_poisonous"] == 1

    assert main(["evaluate", "--predictions", str(pred), "--truth", str(truth)]) == 0
    table = capsys.readouterr().out
    assert "Track 3" in table and "25.25" in table  # 101/4


def test_evaluate_reports_missing_predictions_and_bad_files(tmp_path, capsys):
    truth = _write(tmp_path / "truth.csv", "observation_id,class_id", [(1, 3), (2, 4)])
    pred = _write(tmp_path / "pred.csv", "observation_id,class_id", [(1, 3)])
    assert main(["evaluate", "--predictions", str(pred), "--truth", str(truth)]) == 2
    assert "1 of 2 truth observations have no prediction" in capsys.readouterr().err
    assert main(["evaluate", "--predictions", str(pred), "--truth", str(truth),
                 "--missing-as-unknown", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["track1"] == pytest.approx(0.5)

    bad = _write(tmp_path / "bad.csv", "id,label", [(1, 3)])
    assert main(["evaluate", "--predictions", str(bad), "--truth", str(truth)]) == 2
    assert "needs columns observationID" in capsys.readouterr().err
    assert main(["evaluate", "--predictions", str(tmp_path / "nope.csv"),
                 "--truth", str(truth)]) == 2
    assert "does not exist" in capsys.readouterr().err
