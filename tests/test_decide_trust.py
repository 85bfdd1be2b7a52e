"""`sporeprint decide` refuses what it cannot replay in one line: costs that are not
finite numbers in range, both poison costs 0, an --out that is a folder, a run that
never scored the batch; and it warns (and still runs) when the costs leave no room for
a poison-risk answer."""

from __future__ import annotations

import pytest
from conftest import trained_store_cli

from heads.decision import POISON_RISK, Costs
from sporeprint.cli import main
from sporeprint.decisions import poison_risk_warning
from store import FeatureStore

SPACE = "sim"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("decide")
    store, files = trained_store_cli(root, seed=4, space=SPACE)
    with FeatureStore(store, read_only=True) as fs:
        runs = fs.sql("SELECT DISTINCT run_key FROM predictions WHERE batch = 'test_2024'"
                      ).column(0).to_pylist()
    return {"root": root, "store": str(store), "runs": runs}


def decide(world, *args) -> list[str]:
    return ["decide", "--store", world["store"], "--batch", "test_2024", *args]


def refused(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert "Traceback" not in captured.err
    return err


@pytest.mark.parametrize("option", ["--cost-poisonous-as-edible", "--cost-edible-as-poisonous",
                                    "--cost-wrong"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "-1", "1e13"])
def test_a_cost_outside_its_range_is_named_with_the_range(world, capsys, option, value):
    err = refused(decide(world, option, value), capsys)
    assert option in err and "0..1e+12" in err


def test_both_poison_costs_zero_is_refused(world, capsys):
    err = refused(decide(world, "--cost-poisonous-as-edible", "0",
                         "--cost-edible-as-poisonous", "0"), capsys)
    assert "--cost-poisonous-as-edible" in err and "--cost-edible-as-poisonous" in err
    assert "both" in err


def test_out_must_be_a_file_in_an_existing_folder(world, capsys, tmp_path):
    err = refused(decide(world, "--out", str(tmp_path)), capsys)
    assert "is a directory" in err and "decided.csv" in err
    err = refused(decide(world, "--out", str(tmp_path / "no" / "such" / "d.csv")), capsys)
    assert "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_never_scored_the_batch_is_refused_with_the_runs_that_did(world, capsys):
    err = refused(decide(world, "--run", "nope"), capsys)
    assert "'nope'" in err and all(r in err for r in world["runs"])
    assert main(decide(world, "--run", world["runs"][0])) == 0  # the real run replays
    out = capsys.readouterr().out
    assert int(out.split("': ")[1].split(" observations")[0]) > 0


@pytest.mark.parametrize("args", [["--cost-poisonous-as-edible", "0"],
                                  ["--cost-poisonous-as-edible", "1000", "--cost-wrong", "1e6"]])
def test_costs_that_leave_no_room_for_a_poison_risk_answer_warn_and_still_run(
        world, capsys, args):
    assert main(decide(world, *args)) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "poison" in warnings[0]
    line = next(x for x in captured.out.splitlines() if x.strip().startswith("answers:"))
    mix = {k.strip(): int(v) for k, v in (kv.rsplit(" ", 1) for kv in line.split(":", 1)[1].split(","))}
    assert mix[POISON_RISK] == 0 and sum(mix.values()) > 0  # no poison-risk answer, as foretold
    assert "observations re-decided" in captured.out


def test_the_warning_follows_the_threshold_rule():
    assert poison_risk_warning(Costs()) is None  # Track 3
    assert poison_risk_warning(Costs(1000.0, 1.0, 1.0)) is None
    assert poison_risk_warning(Costs(0.0, 1.0, 1.0)) is not None
    assert "0.001" in poison_risk_warning(Costs(1000.0, 1.0, 1e6))
    assert poison_risk_warning(Costs(1000.0, 1.0, 0.0)) is None  # no wrong-answer cost at all
