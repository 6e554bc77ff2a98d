"""The whole vecclf exception tree.

Every error a user can cause is a :class:`VecclfError`; ``http_status`` tells the HTTP
layer which 4xx to answer and the CLI prints ``message`` and exits non-zero.
"""

from __future__ import annotations


class VecclfError(Exception):
    """Base of every error vecclf raises on purpose."""

    http_status: int = 400

    @property
    def kind(self) -> str:
        """Stable machine-readable name of the error (the class name)."""
        return type(self).__name__


class InvalidInputError(VecclfError, ValueError):
    """An input (file, bytes, text, vector, parameter) is malformed or unsupported."""


class LimitExceededError(InvalidInputError):
    """An input is larger than a configured limit (bytes, pixels, frames)."""

    http_status = 413


class NotFoundError(VecclfError, LookupError):
    """A named thing (input id, concept, file) does not exist."""

    http_status = 404


class UnknownConceptError(NotFoundError):
    """A concept name is not in the store."""


class ConflictError(VecclfError):
    """The request conflicts with stored state (e.g. renaming onto an existing concept)."""

    http_status = 409


class NoFaceError(InvalidInputError):
    """No face was found in an image given to the face embedder."""


class ModalityError(InvalidInputError):
    """A query's modality cannot be compared with the stored vectors (separate spaces)."""


class StoreError(VecclfError):
    """The store cannot be used as asked."""

    http_status = 409


class IndexSaveError(StoreError):
    """The index file could not be saved (e.g. the disk is full). Every acknowledged write is in the database,
    and the index is rebuilt from it when the store is next opened: nothing is lost."""


class StoreNotFoundError(StoreError, NotFoundError):
    """No store exists at the given path."""

    http_status = 404


class StoreLockedError(StoreError):
    """Another process holds the store open for writing."""

    http_status = 423


class StoreCorruptError(StoreError):
    """The store's database file is damaged or not a vecclf store."""

    http_status = 503


class ReadOnlyError(StoreError):
    """A write was attempted on a store opened read-only."""


class ModelMismatchError(StoreError):
    """Vectors or an embedder do not match the embedder the store was created with."""


class ModelLoadError(VecclfError):
    """An embedding model could not be created or its weights could not be loaded."""

    http_status = 503


def __getattr__(name: str) -> type:
    # NotFittedError is scikit-learn's too; made on first use so that importing vecclf's errors
    # does not import scikit-learn (a second on start-up) where no estimator is used.
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError as SklearnNotFittedError

        class NotFittedError(VecclfError, SklearnNotFittedError):
            """An estimator or head was used before it was fitted (also scikit-learn's ``NotFittedError``)."""

        NotFittedError.__module__, NotFittedError.__qualname__ = __name__, "NotFittedError"
        globals()["NotFittedError"] = NotFittedError
        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConflictError",
    "IndexSaveError",
    "InvalidInputError",
    "LimitExceededError",
    "ModalityError",
    "ModelLoadError",
    "ModelMismatchError",
    "NoFaceError",
    "NotFoundError",
    "ReadOnlyError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreNotFoundError",
    "UnknownConceptError",
    "VecclfError",
]
