"""The answer kind of stored predictions: a column of ``predictions``, and a store made
by schema version 1 (no kind column) gets each row's kind once when it is first opened
for writing."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from store import FeatureStore, StoreError

# (observation_id, class_id, status, reason) as version 1 wrote them, and the kind each
# row gets
VERSION_1_ROWS = [
    (1, 5, "scored", "argmax: p=0.910, P(poisonous)=0.001 <= 0.019", "species"),
    (2, 7, "scored", "poison-risk: P(poisonous)=0.031 > 0.012", "poison_risk"),
    (3, 7, "scored", "argmax: p=0.600 (poisonous)", "species"),
    (4, -1, "scored", "unknown: P(unknown)=0.800, P(poisonous)=0.002 <= 0.017", "unknown"),
    (5, 7, "no_usable_image",
     "no usable image: training prior only; poison-risk: P(poisonous)=0.040 > 0.019",
     "prior_only"),
    (6, -1, "rejected", "no accepted metadata row: training prior only; unknown: ...",
     "prior_only"),
]


def _version_1_store(path):
    """A store as schema version 1 left it: no kind column, predictions written."""
    with FeatureStore(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE predictions DROP COLUMN kind")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    for obs, cls, status, reason, _ in VERSION_1_ROWS:
        con.execute("INSERT INTO predictions (run_key, batch, observation_id, class_id, status, "
                    "reason) VALUES ('r', 'old', ?, ?, ?, ?)", [obs, cls, status, reason])
    con.close()


def _version(fs) -> str:
    return fs.sql("SELECT value FROM meta WHERE key = 'schema_version'").column(0)[0].as_py()


def test_a_new_store_has_the_kind_column_and_schema_version_2(tmp_path):
    with FeatureStore(tmp_path / "new.duckdb") as fs:
        assert _version(fs) == "2"
        fs.write_predictions("r", "b", pa.table({"observation_id": [1, 2],
                                                 "class_id": pa.array([3, -1], pa.int32()),
                                                 "kind": ["poison_risk", "unknown"]}))
        assert fs.answer_kinds("b").to_pylist() == [
            {"observation_id": 1, "kind": "poison_risk"}, {"observation_id": 2, "kind": "unknown"}]


def test_a_version_1_store_gets_its_kinds_once_on_the_first_writable_open(tmp_path):
    path = tmp_path / "v1.duckdb"
    _version_1_store(path)
    with FeatureStore(path, read_only=True) as ro:  # cannot be upgraded read-only: one line
        with pytest.raises(StoreError, match="no kind column yet; open it once for writing") \
                as err:
            ro.answer_kinds("old")
        assert "\n" not in str(err.value)
        with pytest.raises(StoreError, match="open it once for writing"):
            ro.poison_flagged("old")
    with FeatureStore(path) as fs:
        assert _version(fs) == "2"
        got = fs.answer_kinds("old").column("kind").to_pylist()
        assert got == [row[-1] for row in VERSION_1_ROWS]
        flagged = fs.poison_flagged("old").column("observation_id").to_pylist()
        assert flagged == [2]
        # the derivation ran once: a later row is never read for its kind
        fs.write_predictions("r", "new", pa.table({
            "observation_id": [9], "class_id": pa.array([7], pa.int32()), "status": ["scored"],
            "reason": ["poison-risk: P(poisonous)=0.5 > 0.01"]}))
    with FeatureStore(path) as fs:
        assert fs.answer_kinds("new").column("kind").to_pylist() == [None]
        assert fs.answer_kinds("old").column("kind").to_pylist() == [r[-1] for r in VERSION_1_ROWS]
