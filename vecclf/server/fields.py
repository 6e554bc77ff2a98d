"""Request fields, declared once: each validates a request's value and states itself in the OpenAPI document.

A :class:`Field` reads its value from a parsed JSON body or from a multipart form (where every value
arrives as a string) and refuses anything outside its type and bounds with an :class:`InvalidInputError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidInputError, LimitExceededError

Kind = Literal["string", "integer", "number", "boolean", "strings", "file"]


@dataclass(frozen=True)
class Field:
    """One named request field: type, bounds, default, and a line for the API document."""

    name: str
    kind: Kind
    summary: str = ""
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    enum: Sequence[str] | None = None
    max_items: int | None = None
    min_length: int | None = None  # of a string, or of each string in a list
    max_length: int | None = None
    form: str | None = None  # its name in a multipart form, when that differs (``concept`` for ``concepts``)

    @property
    def form_name(self) -> str:
        """The field's name in a multipart form."""
        return self.form or self.name

    # ------------------------------------------------------------- reading
    def read(self, body: dict[str, Any]) -> Any:
        """The field's value in a JSON body (its default when absent or null), validated."""
        value = body.get(self.name)
        if value is None:
            if self.required:
                raise InvalidInputError(f"{self.name!r} is required")
            return self.default
        return self.check(value)

    def read_form(self, form: Any) -> Any:
        """The field's value in a multipart form, converted from text and validated."""
        values = [v for v in form.getlist(self.form_name) if isinstance(v, str)]
        if not values:
            if self.required:
                raise InvalidInputError(f"{self.form_name!r} is required")
            return self.default
        if self.kind == "strings":
            return self.check(values)
        raw = values[0]
        if self.kind == "integer":
            if not (raw.isascii() and raw.lstrip("-").isdigit()):
                raise InvalidInputError(f"{self.name!r} must be an integer")
            return self.check(int(raw))
        if self.kind == "number":
            try:
                return self.check(float(raw))
            except ValueError:
                raise InvalidInputError(f"{self.name!r} must be a number") from None
        if self.kind == "boolean":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise InvalidInputError(f"{self.name!r} must be true or false")
            return raw.lower() in ("true", "1")
        return self.check(raw)

    def check(self, value: Any) -> Any:
        """``value`` if it has this field's type and bounds, else an :class:`InvalidInputError`."""
        name = repr(self.name)
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(f"{name} must be an integer")
        elif self.kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInputError(f"{name} must be a finite number")
            value = float(value)
        elif self.kind == "boolean":
            if not isinstance(value, bool):
                raise InvalidInputError(f"{name} must be true or false")
        elif self.kind == "string":
            if not isinstance(value, str):
                raise InvalidInputError(f"{name} must be a string")
        elif self.kind == "strings":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise InvalidInputError(f"{name} must be a list of strings")
            if self.max_items is not None and len(value) > self.max_items:
                raise LimitExceededError(f"{name} may hold at most {self.max_items} items")
        if self.minimum is not None and (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
            raise InvalidInputError(
                f"{name} must be {'above' if self.exclusive_minimum else 'at least'} {self.minimum:g}"
            )
        if self.maximum is not None and value > self.maximum:
            raise InvalidInputError(f"{name} must be at most {self.maximum:g}")
        if self.enum is not None and value not in self.enum:
            raise InvalidInputError(f"{name} must be one of {', '.join(self.enum)}")
        for text in value if self.kind == "strings" else [value] if self.kind == "string" else []:
            if self.min_length is not None and len(text) < self.min_length:
                raise InvalidInputError(f"{name} must not be empty" if self.min_length == 1 else f"{name} is too short")
            if self.max_length is not None and len(text) > self.max_length:
                raise InvalidInputError(f"{name} may be at most {self.max_length} characters")
        return value

    # ------------------------------------------------------------- documenting
    def schema(self) -> dict[str, Any]:
        """The field as an OpenAPI 3.0 schema."""
        out: dict[str, Any]
        lengths = {"minLength": self.min_length, "maxLength": self.max_length}
        lengths = {k: v for k, v in lengths.items() if v is not None}
        if self.kind == "strings":
            out = {"type": "array", "items": {"type": "string", **lengths}}
            if self.max_items is not None:
                out["maxItems"] = self.max_items
        elif self.kind == "file":
            out = {"type": "array", "items": {"type": "string", "format": "binary"}}
        else:
            out = {"type": self.kind, **(lengths if self.kind == "string" else {})}
        if self.minimum is not None:
            out["minimum"] = self.minimum if self.kind == "number" else int(self.minimum)
            if self.exclusive_minimum:
                out["exclusiveMinimum"] = True
        if self.maximum is not None:
            out["maximum"] = self.maximum if self.kind == "number" else int(self.maximum)
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.default is not None:
            out["default"] = list(self.default) if isinstance(self.default, tuple) else self.default
        if self.summary:
            out["description"] = self.summary
        return out
