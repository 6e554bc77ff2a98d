"""Schema DDL, ``SCHEMA_VERSION`` and migrations for the DuckDB catalogue."""

from __future__ import annotations

import re

SCHEMA_VERSION = 4

_SPACE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def space_table(space: str, kind: str = "vectors") -> str:
    """Table name for a space's vectors or embedding cache (space names are internal identifiers)."""
    if not _SPACE.match(space):
        raise ValueError(f"invalid space name {space!r}")
    return f"{kind}_{space}"


BASE_DDL = [
    "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    "CREATE SEQUENCE input_ids START 1",
    "CREATE SEQUENCE concept_ids START 1",
    """CREATE TABLE inputs (
        id BIGINT PRIMARY KEY,
        kind VARCHAR NOT NULL,          -- image | text | video | frame
        space VARCHAR NOT NULL,
        source VARCHAR,
        content_hash VARCHAR NOT NULL,
        parent_id BIGINT,               -- frames point at their video
        frame_index INTEGER,
        timestamp_s DOUBLE,
        text VARCHAR,
        metadata VARCHAR,               -- JSON
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    )""",
    "CREATE INDEX inputs_parent ON inputs(parent_id)",
    """CREATE TABLE concepts (
        id BIGINT PRIMARY KEY,
        name VARCHAR NOT NULL UNIQUE,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        threshold DOUBLE                -- a user's open-set threshold; NULL: learned from the examples
    )""",
    """CREATE TABLE labels (
        input_id BIGINT NOT NULL,
        concept_id BIGINT NOT NULL,
        positive BOOLEAN NOT NULL,
        PRIMARY KEY (input_id, concept_id)
    )""",
]


def space_ddl(space: str, dim: int) -> list[str]:
    """Tables holding one space's vectors and its embedding cache."""
    return [
        f"CREATE TABLE {space_table(space)} (id BIGINT PRIMARY KEY, vector FLOAT[{int(dim)}] NOT NULL)",
        f"""CREATE TABLE {space_table(space, "cache")} (
            model VARCHAR NOT NULL, content_hash VARCHAR NOT NULL, vector FLOAT[{int(dim)}] NOT NULL,
            PRIMARY KEY (model, content_hash))""",
    ]


HEADS_DDL = """CREATE TABLE heads (
        space VARCHAR PRIMARY KEY,
        trained_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        generation BIGINT NOT NULL,     -- the space's generation the head was trained at
        meta VARCHAR NOT NULL,          -- JSON: mode, hyperparameters, classes
        weights BLOB NOT NULL           -- .npz (no pickle)
    )"""

THUMBNAILS_DDL = """CREATE TABLE thumbnails (
        id BIGINT PRIMARY KEY,          -- the input (a video's comes from its first sampled frame)
        jpeg BLOB NOT NULL              -- at most 128 px on a side, for result pages
    )"""

BASE_DDL += [HEADS_DDL, THUMBNAILS_DDL]

MIGRATIONS: dict[int, list[str]] = {
    1: [HEADS_DDL],
    2: [THUMBNAILS_DDL],
    3: ["ALTER TABLE concepts ADD COLUMN threshold DOUBLE"],
}
"""``from_version -> statements`` that bring a store to ``from_version + 1``."""
