"""Embedding and scoring on a Ray cluster, with the single-process answers.

``ray[data]`` is optional (``pip install -e .[ray]``); importing this package does
not import Ray, the functions do. The store stays on the machine that runs the
command; images, vectors and scoring rows travel as Parquet and Arrow blocks.

>>> from sporeprint.distributed import embed_store_ray
>>> with FeatureStore("fungi.duckdb") as fs:                                # doctest: +SKIP
...     embed_store_ray(fs, "facebook/dinov2-large", "dinov2_large", address="auto")
"""

from sporeprint.distributed.cluster import RayOptions, require_ray
from sporeprint.distributed.embedding import embed_store_ray
from sporeprint.distributed.scoring import score_batch_ray

__all__ = ["RayOptions", "embed_store_ray", "require_ray", "score_batch_ray"]
