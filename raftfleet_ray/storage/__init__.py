"""Durable storage for one member: hard state, snapshot and log entries.

``MemoryStorage`` keeps them in process memory (the default until the write-ahead log
lands); every backend follows the same contract, which is the core's ``Ready`` contract.
"""

from .base import DurableState, Storage
from .memory import MemoryStorage

__all__ = ["DurableState", "MemoryStorage", "Storage"]
