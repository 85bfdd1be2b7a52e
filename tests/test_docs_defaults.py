"""What docs/heads.md and docs/store.md say about defaults and columns is what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from heads.config import MLPConfig, TrainConfig
from store.encoding import GEOHASH_CELL_LEVELS, GEOHASH_MIN_COUNT

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _defaults_paragraph() -> str:
    text = (DOCS / "heads.md").read_text()
    return " ".join(text[text.index("**Defaults.**"):].split("\n\n")[0].split())


def test_heads_doc_states_the_training_defaults():
    tc, doc = TrainConfig(), _defaults_paragraph()
    assert f"**`{tc.sampler}` sampler**" in doc
    assert f"MLP width {MLPConfig.hidden}" in doc and f"batch {tc.batch_size}" in doc
    assert f"warm restarts every {tc.restart_epochs} epochs (`--restart-epochs`)" in doc
    assert f"at most {tc.epochs} epochs (`--epochs`" in doc
    assert f"after {tc.patience} epochs without a better validation loss (`--patience`" in doc
    assert tc.monitor == "loss" and tc.scheduler == "cosine" and tc.taxonomy_weight == 0.0
    assert "β = 0 (no taxonomy loss)" in doc


def test_heads_doc_names_the_taxonomy_option_train_has():
    from sporeprint.cli import build_parser

    text = (DOCS / "heads.md").read_text()
    options = {s for a in build_parser()[1]["train"]._actions for s in a.option_strings}
    for option in re.findall(r"`sporeprint train (--[a-z-]+)", text):
        assert option in options, option
    assert "--taxonomy-weight" in options and "`sporeprint train --taxonomy-weight β`" in text


def test_store_doc_lists_the_geohash_levels_the_encoder_uses():
    text = (DOCS / "store.md").read_text()
    section = " ".join(text[text.index("## Metadata encoding"):text.index("## Splits")].split())
    levels = " and ".join(str(v) for v in GEOHASH_CELL_LEVELS)
    assert f"geohash levels {levels}" in section
    assert f"at least {GEOHASH_MIN_COUNT} `role = 'train'` observations" in section
    for level in GEOHASH_CELL_LEVELS:
        assert f"`geohash_{level}=<other>`" in section or f"`geohash_{level}`" in section
