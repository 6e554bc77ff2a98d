"""The HTTP API: ``routes`` (the route table), ``fields`` (request fields), ``parsing`` (reading requests),
``handlers`` (what each route does), ``batching`` (coalescing queries), ``middleware`` (token, body limit),
``openapi`` (the document, from the table) and ``app`` (:func:`create_app`)."""

from ..config import ServerLimits
from .app import create_app

__all__ = ["ServerLimits", "create_app"]
