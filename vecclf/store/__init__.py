"""The store: DuckDB catalogue (the truth, vectors included) plus FAISS indexes derived from it.

``catalogue`` holds every SQL statement, ``vectors`` one space's FAISS index, ``index`` the index
kinds, ``locks`` the writer's file lock and the readers-writer lock, ``records`` the rows in and out, ``memory``
what is kept in memory beside the indexes (label views, records), and ``store`` the
:class:`Store` facade that owns the locks and the order "transaction, then index".
"""

from .locks import LOCK_FILE
from .records import ConceptInfo, InputRecord, NewInput, SpaceState
from .store import DB_FILE, Store, Written

__all__ = ["DB_FILE", "LOCK_FILE", "ConceptInfo", "InputRecord", "NewInput", "SpaceState", "Store", "Written"]
