"""The store: DuckDB catalogue (the truth, vectors included) plus FAISS indexes derived from it.

``catalogue`` holds every SQL statement, ``vectors`` one space's FAISS index, ``index`` the index
kinds, ``locks`` the readers-writer lock, ``records`` the rows in and out, and ``store`` the
:class:`Store` facade that owns the locks and the order "transaction, then index".
"""

from .records import ConceptInfo, InputRecord, NewInput
from .store import DB_FILE, LOCK_FILE, Store

__all__ = ["DB_FILE", "LOCK_FILE", "ConceptInfo", "InputRecord", "NewInput", "Store"]
