"""The route table: every endpoint with its handler, its fields and what it may do.

The app validates requests against these fields and the OpenAPI document is generated from the same
table, so the two cannot drift apart. Bounds come from :class:`~vecclf.config.ServerLimits`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from ..config import C_MAX, C_MIN, DEFAULT_C, DEFAULT_K, DEFAULT_TOP, METHODS, MODES, ServerLimits
from ..labels import MAX_CONCEPT_CHARS, MAX_ID
from . import handlers
from .fields import Field
from .parsing import Call

Handler = Callable[[Request, Call], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """One route. ``fields`` describe its JSON body (or path parameter); ``query`` its query parameters;
    ``form`` its multipart form, if it takes one; ``writes`` routes are refused by read-only servers and run one at a time; ``public`` ones need no token."""

    method: str
    path: str
    handler: Handler
    summary: str
    fields: Sequence[Field] = ()
    query: Sequence[Field] = ()
    form: Sequence[Field] | None = None
    body_required: bool = False
    writes: bool = False
    public: bool = False
    media_type: str = "application/json"
    status: int = 200

    @property
    def path_fields(self) -> list[Field]:
        """Fields that are path parameters (``{name}`` in the path)."""
        return [f for f in self.fields if "{" + f.name + "}" in self.path]

    @property
    def body_fields(self) -> list[Field]:
        """Fields read from the body."""
        return [f for f in self.fields if "{" + f.name + "}" not in self.path]


def _names(name: str, summary: str, form: str) -> Field:
    return Field(name, "strings", summary, (), form=form, min_length=1, max_length=MAX_CONCEPT_CHARS, max_items=256)


def endpoints(limits: ServerLimits) -> list[Endpoint]:
    """Every route of the API under ``limits``."""
    text = Field("text", "string", "a text input", min_length=1)
    texts = Field("texts", "strings", "text inputs", max_items=limits.max_texts, min_length=1)
    image = Field("image_base64", "string", "an image file's bytes, base64-encoded")
    stored = Field("id", "integer", "query with a stored input's vector", minimum=1, maximum=MAX_ID)
    files = Field("file", "file", "image or video files (repeatable)")
    faces = Field(
        "faces",
        "string",
        "faces stores: the largest face of each photo, or every face",
        "largest",
        enum=("largest", "all"),
    )
    k_votes = Field("k", "integer", "neighbours that vote", DEFAULT_K, minimum=1, maximum=limits.max_k)
    k_hits = Field("k", "integer", "results per query", DEFAULT_K, minimum=1, maximum=limits.max_k)
    top = Field("top", "integer", "concept scores to return", DEFAULT_TOP, minimum=1, maximum=limits.max_top)
    method = Field("method", "string", "auto: a fresh head, else k-NN, else zero-shot", "auto", enum=METHODS)
    concepts = _names("concepts", "positive concepts", "concept")
    negatives = _names("negatives", "negative concepts", "negative")
    concept_filter = Field("concept", "string", "only inputs labelled with this concept", max_length=MAX_CONCEPT_CHARS)
    concept = Field(
        "concept", "string", "the concept to verify against", required=True, min_length=1, max_length=MAX_CONCEPT_CHARS
    )
    input_id = Field("input_id", "integer", "an input id", required=True, minimum=1, maximum=MAX_ID)
    name = Field("name", "string", "a concept's name", required=True, min_length=1, max_length=MAX_CONCEPT_CHARS)
    quantile = Field(
        "unknown_quantile",
        "number",
        "share of in-scope answers the open-set thresholds reject (0: never unknown)",
        minimum=0,
        maximum=0.4999,
    )
    keep = Field("keep_duplicates", "boolean", "store inputs already stored (else only their labels merge)", False)
    collapse = Field("collapse", "boolean", "one hit per video (its best frame), not one per matching frame", True)
    listing = (
        Field(
            "concept", "string", "only inputs labelled with this concept", min_length=1, max_length=MAX_CONCEPT_CHARS
        ),
        Field("kind", "string", "only inputs of this kind", enum=("image", "text", "video")),
        Field("limit", "integer", "inputs per page", 50, minimum=1, maximum=1000),
        Field(
            "cursor",
            "integer",
            "the next_cursor of the previous page (0: the first page)",
            0,
            minimum=0,
            maximum=MAX_ID,
        ),
    )
    queries = (text, texts, image)
    return [
        Endpoint("GET", "/healthz", handlers.healthz, "liveness (no token needed)", public=True),
        Endpoint("GET", "/concepts", handlers.concepts, "concepts with example counts and open-set thresholds"),
        Endpoint(
            "PATCH",
            "/concepts/{name}",
            handlers.rename_concept,
            "rename a concept (its labels and threshold go with it)",
            fields=(
                name,
                Field("new_name", "string", "the new name", required=True, min_length=1, max_length=MAX_CONCEPT_CHARS),
            ),
            body_required=True,
            writes=True,
        ),
        Endpoint(
            "DELETE",
            "/concepts/{name}",
            handlers.delete_concept,
            "delete a concept and its labels; its inputs stay (unlabelled ones are listed) unless with_inputs",
            fields=(name,),
            query=(Field("with_inputs", "boolean", "delete the concept's inputs too", False),),
            writes=True,
        ),
        Endpoint(
            "PUT",
            "/concepts/{name}/threshold",
            handlers.set_threshold,
            "set a concept's open-set threshold (a similarity: answers below it are unknown, verification fails)",
            fields=(name, Field("threshold", "number", "similarity threshold", required=True, minimum=-1, maximum=1)),
            body_required=True,
            writes=True,
        ),
        Endpoint(
            "DELETE",
            "/concepts/{name}/threshold",
            handlers.clear_threshold,
            "go back to the threshold learned from the concept's examples",
            fields=(name,),
            writes=True,
        ),
        Endpoint(
            "POST",
            "/inputs",
            handlers.add_inputs,
            "add texts, a base64 image, or uploaded images/videos with concept labels",
            fields=(*queries, concepts, negatives, keep),
            form=(files, concepts, negatives, keep),
            body_required=True,
            writes=True,
            status=201,
        ),
        Endpoint(
            "GET",
            "/inputs",
            handlers.list_inputs,
            "stored inputs, a page at a time (newest last; pass next_cursor back as cursor)",
            query=listing,
        ),
        Endpoint("GET", "/inputs/{input_id}", handlers.get_input, "one stored input", fields=(input_id,)),
        Endpoint(
            "DELETE",
            "/inputs/{input_id}",
            handlers.delete_input,
            "delete an input (a video with its frames)",
            fields=(input_id,),
            writes=True,
        ),
        Endpoint(
            "POST",
            "/predict",
            handlers.predict,
            "classify inputs (or a stored input by id)",
            fields=(*queries, stored, faces, method, k_votes, top, quantile),
            form=(files, faces, method, k_votes, top, quantile),
            body_required=True,
        ),
        Endpoint(
            "POST",
            "/search",
            handlers.search,
            "most similar stored inputs; 'concept' filters before ranking",
            fields=(*queries, stored, faces, k_hits, concept_filter, collapse),
            form=(files, faces, k_hits, concept_filter, collapse),
            body_required=True,
        ),
        Endpoint(
            "POST",
            "/train",
            handlers.train,
            "train the logistic head",
            fields=(
                Field("mode", "string", "auto: exclusive when every example has one concept", "auto", enum=MODES),
                Field("C", "number", "inverse L2 strength", DEFAULT_C, minimum=C_MIN, maximum=C_MAX),
            ),
            writes=True,
        ),
        Endpoint(
            "POST",
            "/verify",
            handlers.verify,
            "1:1 verification of inputs against one concept",
            fields=(*queries, faces, concept, quantile),
            form=(files, faces, concept, quantile),
            body_required=True,
        ),
        Endpoint(
            "GET",
            "/inputs/{input_id}/thumbnail",
            handlers.thumbnail,
            "an input's JPEG thumbnail (images and videos)",
            fields=(input_id,),
            media_type="image/jpeg",
        ),
        Endpoint("GET", "/evaluation", handlers.evaluation, "the latest evaluation report"),
        Endpoint(
            "POST",
            "/evaluate",
            handlers.evaluate,
            "evaluate the stored examples (LOO k-NN or k-fold head) and keep the report",
            fields=(
                Field("method", "string", "knn: leave-one-out; head: k-fold", "knn", enum=("knn", "head")),
                Field("folds", "integer", "folds for the head", 5, minimum=2, maximum=limits.max_folds),
            ),
            writes=True,
        ),
        Endpoint("GET", "/", handlers.page, "the web page", public=True, media_type="text/html"),
    ]
