"""The S3 Parquet store: partitioned tables, concurrency-safe upserts, quarantine, objects.

Three layers, each in its module:

- :mod:`stockml.storage.layout`: the layout as pure functions over object keys and frames
  (object names, base and delta files, row versions, which files readers see, how a merge
  folds copies of a row); unit-tested without S3.
- :mod:`stockml.storage.objects`: object I/O, a small adapter over one bucket's S3 client.
- :mod:`stockml.storage.store`: :class:`Store`, the algorithm between them: reads, upserts
  that stay correct under any number of concurrent writers, compaction, quarantine. Its
  module docstring states the guarantees and why they hold.

Callers use :class:`Store` (``from stockml.storage import Store``).
"""

from stockml.storage.layout import Listing
from stockml.storage.objects import ObjectGoneError, S3Objects
from stockml.storage.store import Store, UpsertReport

# The limits of the write algorithm, read by stockml.storage.store at each use (a test or a
# benchmark sets them here, in one place).
#: a partition with this many live deltas is compacted by its next upsert
MAX_DELTAS = 8
# attempts of one write under contention (each one after a conflict or a file deleted by a
# concurrent merge between its LIST and its GET), with a short randomised pause in between
_ATTEMPTS = 12
_RETRY_PAUSE_S = 0.1

__all__ = ["MAX_DELTAS", "Listing", "ObjectGoneError", "S3Objects", "Store", "UpsertReport"]
