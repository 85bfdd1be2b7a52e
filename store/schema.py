"""Table definitions and the column vocabulary of metadata files.

All DDL lives here so that a reader finds every table in one place. Values are
always bound as parameters; the only names formatted into SQL are the fixed
column names below and validated embedding-space names.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

# The kind of answer of each ``predictions`` row: the vocabulary of ``heads.decision.KINDS``
# (the libraries do not import each other; tests/test_architecture.py checks they agree).
PREDICTION_KINDS = ("species", "poison_risk", "unknown", "prior_only")

# Observation-level columns: (name, SQL type). Every image row of one observation
# must agree on all of them (otherwise the row is a conflict).
OBSERVATION_COLUMNS: list[tuple[str, str]] = [
    ("role", "VARCHAR"),
    ("class_id", "INTEGER"),
    ("year", "INTEGER"),
    ("month", "INTEGER"),
    ("day", "INTEGER"),
    ("country_code", "VARCHAR"),
    ("locality", "VARCHAR"),
    ("latitude", "DOUBLE"),
    ("longitude", "DOUBLE"),
    ("coord_uncert", "DOUBLE"),
    ("substrate", "VARCHAR"),
    ("meta_substrate", "VARCHAR"),
    ("habitat", "VARCHAR"),
    ("level0_gid", "VARCHAR"),
    ("level0_name", "VARCHAR"),
    ("level1_gid", "VARCHAR"),
    ("level1_name", "VARCHAR"),
    ("level2_gid", "VARCHAR"),
    ("level2_name", "VARCHAR"),
    ("taxon_id", "VARCHAR"),
    ("scientific_name", "VARCHAR"),
    ("species", "VARCHAR"),
    ("genus", "VARCHAR"),
    ("family", "VARCHAR"),
    ("order", "VARCHAR"),
    ("class", "VARCHAR"),
    ("phylum", "VARCHAR"),
    ("kingdom", "VARCHAR"),
    ("specific_epithet", "VARCHAR"),
    ("taxon_rank", "VARCHAR"),
]
OBSERVATION_FIELDS = [name for name, _ in OBSERVATION_COLUMNS]
IMAGE_FIELDS = ["image_path", "image_unique_id", "rights_holder"]
TAXONOMY_FIELDS = ["species", "scientific_name", "genus", "family", "order", "class", "phylum"]

# The column names metadata files may use are the metadata contract's
# (store/contract.py: COLUMN_ALIASES).

TABLES = [
    "meta", "species", "observations", "images", "embedding_spaces", "embedding_failures",
    "rejects", "encoders", "features", "splits", "runs", "predictions",
]


def q(name: str) -> str:
    """Quote an identifier (``order`` and ``class`` are SQL keywords)."""
    return '"' + name.replace('"', '""') + '"'


def _observation_ddl() -> str:
    cols = ",\n    ".join(f"{q(n)} {t}" for n, t in OBSERVATION_COLUMNS)
    return f"""
CREATE TABLE IF NOT EXISTS observations (
    observation_id BIGINT PRIMARY KEY,
    {cols},
    source_file VARCHAR,
    ingested_at TIMESTAMP DEFAULT current_timestamp
)"""


DDL: list[str] = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """
CREATE TABLE IF NOT EXISTS species (
    class_id INTEGER PRIMARY KEY,
    species VARCHAR,
    scientific_name VARCHAR,
    genus VARCHAR,
    family VARCHAR,
    "order" VARCHAR,
    class VARCHAR,
    phylum VARCHAR,
    poisonous BOOLEAN NOT NULL
)""",
    _observation_ddl(),
    """
CREATE TABLE IF NOT EXISTS images (
    image_id BIGINT PRIMARY KEY,
    observation_id BIGINT NOT NULL,
    image_path VARCHAR NOT NULL UNIQUE,
    file_path VARCHAR,
    image_unique_id VARCHAR,
    rights_holder VARCHAR,
    source_file VARCHAR,
    ingested_at TIMESTAMP DEFAULT current_timestamp
)""",
    """
CREATE TABLE IF NOT EXISTS embedding_spaces (
    space VARCHAR PRIMARY KEY,
    model_id VARCHAR NOT NULL,
    revision VARCHAR,
    dim INTEGER NOT NULL,
    pooling VARCHAR NOT NULL,
    dtype VARCHAR NOT NULL,
    preprocessing JSON,
    table_name VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
)""",
    """
CREATE TABLE IF NOT EXISTS embedding_failures (
    space VARCHAR NOT NULL,
    image_id BIGINT NOT NULL,
    reason VARCHAR,
    recorded_at TIMESTAMP DEFAULT current_timestamp
)""",
    """
CREATE TABLE IF NOT EXISTS rejects (
    source_file VARCHAR,
    row_number BIGINT,
    reason VARCHAR,
    raw JSON,
    recorded_at TIMESTAMP DEFAULT current_timestamp
)""",
    """
CREATE TABLE IF NOT EXISTS encoders (
    encoder_version INTEGER PRIMARY KEY,
    fitted_on VARCHAR,
    vocab JSON,
    columns JSON,
    created_at TIMESTAMP DEFAULT current_timestamp
)""",
    """
CREATE TABLE IF NOT EXISTS features (
    observation_id BIGINT NOT NULL,
    encoder_version INTEGER NOT NULL,
    vector FLOAT[] NOT NULL,
    PRIMARY KEY (observation_id, encoder_version)
)""",
    """
CREATE TABLE IF NOT EXISTS splits (
    observation_id BIGINT NOT NULL,
    seed INTEGER NOT NULL,
    part VARCHAR NOT NULL,
    PRIMARY KEY (observation_id, seed)
)""",
    """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR,
    space VARCHAR,
    head VARCHAR,
    fold INTEGER,
    config JSON,
    metrics JSON,
    path VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    split_seed INTEGER,
    relative_path VARCHAR
)""",
    """
CREATE TABLE IF NOT EXISTS predictions (
    run_key VARCHAR NOT NULL,
    batch VARCHAR NOT NULL,
    observation_id BIGINT NOT NULL,
    class_id INTEGER,
    kind VARCHAR,
    status VARCHAR,
    reason VARCHAR,
    poison_prob DOUBLE,
    unknown_score DOUBLE,
    unknown_prob DOUBLE,
    top5_class_ids INTEGER[],
    top5_probs DOUBLE[],
    evidence_observation_ids BIGINT[],
    created_at TIMESTAMP DEFAULT current_timestamp
)""",
]

# Enrolled species and their labelled observations (store/enrollment.py).
ENROLLMENT_DDL = [
    """
CREATE TABLE IF NOT EXISTS enrollments (
    enrollment_id INTEGER PRIMARY KEY,
    enrolled_by VARCHAR NOT NULL,
    enrolled_at TIMESTAMP NOT NULL,
    labels_file VARCHAR NOT NULL,
    labels_digest VARCHAR NOT NULL,
    n_observations INTEGER NOT NULL,
    n_new_species INTEGER NOT NULL,
    undone_by VARCHAR,
    undone_at TIMESTAMP
)""",
    """
CREATE TABLE IF NOT EXISTS enrolled_species (
    class_id INTEGER PRIMARY KEY,
    species VARCHAR NOT NULL,
    genus VARCHAR,
    family VARCHAR,
    enrollment_id INTEGER NOT NULL
)""",
    """
CREATE TABLE IF NOT EXISTS enrolled_observations (
    enrollment_id INTEGER NOT NULL,
    observation_id BIGINT NOT NULL,
    class_id INTEGER NOT NULL,
    species VARCHAR NOT NULL,
    poisonous BOOLEAN,
    PRIMARY KEY (enrollment_id, observation_id)
)""",
]

# Version 1 stored no answer kind. Its rows get one, once, from what version 1 wrote:
# status (prior-only answers are not 'scored') and the start of the reason text, which
# version 1's decision rule began with "poison-risk" for a poison-risk answer. This is the
# only place that reads reason text; everything else reads the kind column.
_KIND_FROM_VERSION_1 = """
UPDATE predictions SET kind = CASE
    WHEN status IS DISTINCT FROM 'scored' OR reason LIKE 'no usable image%' THEN 'prior_only'
    WHEN reason LIKE '%poison-risk%' THEN 'poison_risk'
    WHEN class_id IS NULL OR class_id < 0 THEN 'unknown'
    ELSE 'species' END
WHERE kind IS NULL
  AND (SELECT value FROM meta WHERE key = 'schema_version') = '1'"""

# Changes to tables of stores made by earlier versions, run on every writable open; each
# statement is idempotent (the version-1 ones end by recording version 2).
MIGRATIONS: list[str] = [
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS split_seed INTEGER",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS relative_path VARCHAR",
    # the four numbers a decision needs, so a batch can be re-decided under other costs
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS best_edible_class INTEGER",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS best_edible_prob DOUBLE",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS best_poisonous_class INTEGER",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS best_poisonous_prob DOUBLE",
    # version 2: the answer's kind as a column
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS kind VARCHAR",
    _KIND_FROM_VERSION_1,
    "UPDATE meta SET value = '2' WHERE key = 'schema_version' AND value = '1'",
    # the conformal prediction set of each answer; NULL for rows scored before (or without
    # a set: heads trained with calibration mode oof)
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS prediction_set INTEGER[]",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS poison_check INTEGER[]",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS set_size INTEGER",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS answer_rank VARCHAR",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS genus VARCHAR",
    # the ranked options behind the set (down to a conformal score bound), so a batch can
    # be given its sets again at another level; NULL for rows scored before
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS ranked_class_ids INTEGER[]",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS ranked_probs DOUBLE[]",
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS ranked_bound DOUBLE",
    # enrolled species and their labelled observations (store/enrollment.py): new tables,
    # so stores of either version gain them on their first writable open
    *ENROLLMENT_DDL,
]


def embedding_table_ddl(table_name: str, dim: int) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {q(table_name)} "
            f"(image_id BIGINT PRIMARY KEY, vector FLOAT[{int(dim)}] NOT NULL)")
