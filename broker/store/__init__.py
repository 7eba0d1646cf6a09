"""Durability behind one contract (``base.Store``): memory (none), SQLite and spool backends."""

from broker.store.base import Store, StoredState, open_store

__all__ = ["Store", "StoredState", "open_store"]
