"""The store's words: the values a role, a split part and a selection may take.

Plain tuples with no imports, so the CLI can offer them as choices without loading
DuckDB. The application imports these (``from store import ROLES``) rather than
spelling the lists out again.
"""

ROLES = ("train", "val", "test", "new")  # an observation's role, given at ingestion
PARTS = ("p1", "p2", "test")  # the parts a split deals val-role observations into
# selections that depend on the split seed: a part, or a fold's training set
SPLIT_SELECTIONS = ("p1", "p2", "fold1", "fold2")
# what an index or a training set may cover
SELECTIONS = ("all", *ROLES, *SPLIT_SELECTIONS)
# how ingestion reads a file's class_id values (store/ingest.py): check them, trust them
# as DF20's, or find each row's class from its species name
CLASS_ID_MODES = ("auto", "official", "species")
