"""Persistence in SQLite: the run's trial table (`trials.db`) and the result cache shared across runs.

Several processes write at once (parallel workers, a resumed driver, two sweeps sharing a cache): both use
WAL, a long busy timeout and `BEGIN IMMEDIATE` for every write.
"""

from dse.storage._cache import CACHE_STATUSES, CacheEntry, ResultCache
from dse.storage._database import BUSY_TIMEOUT_S
from dse.storage._trials import TRIAL_STATUSES, TrialStore

__all__ = ["BUSY_TIMEOUT_S", "CACHE_STATUSES", "TRIAL_STATUSES", "CacheEntry", "ResultCache", "TrialStore"]
