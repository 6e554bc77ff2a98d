"""Turning paths, bytes, PIL images, texts, tables and videos into decoded items, within limits.

Nothing here embeds or stores: it only decodes and validates. Bad items become :class:`Failure`
records (named by source) so one corrupt file never sinks a batch. ``items`` holds the item types,
``images``, ``video`` and ``texts`` decode each kind, and ``files`` walks paths and folders.
"""

from .files import (
    MEDIA_SUFFIXES,
    concept_folders,
    count_inputs,
    decode_ahead,
    decode_media,
    decode_paths,
    expand_paths,
    load_media,
    walk_folder,
)
from .images import decode_image, image_from_pil, thumbnail_jpeg, to_rgb
from .items import (
    IMAGE_SUFFIXES,
    TABLE_SUFFIXES,
    TEXT_SUFFIXES,
    VIDEO_SUFFIXES,
    Failure,
    ImageItem,
    Item,
    MediaLike,
    TextItem,
    VideoItem,
    check_path,
    read_bounded,
    sha256_hex,
    shown,
)
from .texts import decode_texts, make_text, read_text_table, text_file_items
from .video import decode_video

__all__ = [
    "IMAGE_SUFFIXES",
    "MEDIA_SUFFIXES",
    "TABLE_SUFFIXES",
    "TEXT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Failure",
    "ImageItem",
    "Item",
    "MediaLike",
    "TextItem",
    "VideoItem",
    "check_path",
    "concept_folders",
    "count_inputs",
    "decode_ahead",
    "decode_image",
    "decode_media",
    "decode_paths",
    "decode_texts",
    "decode_video",
    "expand_paths",
    "image_from_pil",
    "load_media",
    "make_text",
    "read_text_table",
    "read_bounded",
    "sha256_hex",
    "shown",
    "text_file_items",
    "thumbnail_jpeg",
    "to_rgb",
    "walk_folder",
]
