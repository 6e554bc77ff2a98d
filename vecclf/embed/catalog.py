"""What OpenCLIP offers — model names, pretrained tags, where their weights live — read from its package files
without importing it, so that a mistyped name or a missing download fails in well under a second instead of
after importing torch and open_clip (seconds) and retrying the model hub (tens of seconds).

If open_clip's files change shape and cannot be read this way, the checks step aside and open_clip itself
decides when the model is built.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ModelLoadError

OUR_CONFIGS = Path(__file__).resolve().parent / "model_configs"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class Tag:
    """A pretrained tag of a model: where its weights are published."""

    hf_hub: str | None
    url: str | None


def _package() -> Path | None:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def model_names() -> frozenset[str] | None:
    """Every model open_clip can build (its configs and ours); None when they cannot be listed."""
    package = _package()
    if package is None or not (package / "model_configs").is_dir():
        return None
    found = {p.stem for p in (package / "model_configs").glob("*.json")} | {p.stem for p in OUR_CONFIGS.glob("*.json")}
    return frozenset(found | {f"{name}-quickgelu" for name in found})


def image_side(model: str) -> int | None:
    """The side of the square an OpenCLIP model's image tower sees, read from its config file (no torch import,
    no weights); None when the config cannot be found."""
    package = _package()
    name = model.removesuffix("-quickgelu")
    for folder in (OUR_CONFIGS, package / "model_configs" if package else None):
        if folder is not None and (folder / f"{name}.json").is_file():
            try:
                size = json.loads((folder / f"{name}.json").read_text())["vision_cfg"]["image_size"]
                return int(max(size) if isinstance(size, list) else size)
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None


def _kwargs(call: ast.expr) -> dict[str, Any]:
    if not isinstance(call, ast.Call):
        return {}
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is not None:
            try:
                out[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                out[kw.arg] = None
    return out


@lru_cache(maxsize=1)
def pretrained() -> dict[str, dict[str, Tag]] | None:
    """model -> tag -> where its weights are, from open_clip's ``pretrained.py``; None when it cannot be read."""
    package = _package()
    try:
        tree = ast.parse((package / "pretrained.py").read_text(encoding="utf-8")) if package else None
    except (OSError, SyntaxError, ValueError):
        return None
    if tree is None:
        return None
    tables: dict[str, dict[str, tuple[Tag, bool]]] = {}
    registry: ast.Dict | None = None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name, value = node.targets[0].id, node.value
        if name == "_PRETRAINED" and isinstance(value, ast.Dict):
            registry = value
        elif isinstance(value, ast.Call) and getattr(value.func, "id", None) == "dict":
            tags = {}
            for kw in value.keywords:
                if kw.arg is not None:
                    cfg = _kwargs(kw.value)
                    tags[kw.arg] = (Tag(cfg.get("hf_hub"), cfg.get("url")), bool(cfg.get("quick_gelu")))
            tables[name] = tags
    if registry is None:
        return None
    out: dict[str, dict[str, Tag]] = {}
    for key, value in zip(registry.keys, registry.values):
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(value, ast.Name):
            table = tables.get(value.id, {})
            out[key.value] = {tag: t for tag, (t, _) in table.items()}
            quick = {tag: t for tag, (t, q) in table.items() if q}
            if quick:
                out[f"{key.value}-quickgelu"] = quick
    return out or None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can the model hub be reached? (Assumed yes behind a configured proxy.)"""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def cached(tag: Tag, cache_dir: str | None = None) -> bool:
    """Whether the tag's weights are already in the huggingface_hub cache."""
    if not tag.hf_hub:
        return False
    from huggingface_hub import try_to_load_from_cache

    repo = tag.hf_hub.rstrip("/")
    return any(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache_dir), str) for f in WEIGHT_FILES)


def preflight(model: str, pretrained_tag: str | None, checkpoint: str | None) -> None:
    """Refuse at once what cannot be built: an unknown model, an unknown tag, a missing checkpoint file, or
    weights that are neither cached nor downloadable (no route to the hub)."""
    if model.startswith(("hf-hub:", "local-dir:")):
        return
    names = model_names()
    if names is not None and model not in names:
        near = sorted(n for n in names if n.lower().startswith(model.lower()[:4]))[:8]
        raise ModelLoadError(
            f"unknown OpenCLIP model {model!r}" + (f"; did you mean one of: {', '.join(near)}?" if near else "")
        )
    if checkpoint is not None:
        if not Path(checkpoint).expanduser().is_file():
            raise ModelLoadError(f"checkpoint file not found: {checkpoint}")
        return
    if not pretrained_tag:
        return
    table = pretrained()
    if table is None:
        return
    tags = table.get(model, {})
    tag = tags.get(pretrained_tag.lower().replace("-", "_"))
    if tag is None:
        known = ", ".join(sorted(tags)) or "none: build it with --checkpoint FILE"
        raise ModelLoadError(f"unknown pretrained tag {pretrained_tag!r} for OpenCLIP model {model}; its tags: {known}")
    if not cached(tag) and not hub_reachable():
        raise ModelLoadError(
            f"could not fetch the weights of {model}:{pretrained_tag}: they are not in the huggingface_hub cache and "
            "the model hub cannot be reached from here. Download open_clip_pytorch_model.bin from "
            f"https://huggingface.co/{(tag.hf_hub or '').rstrip('/')} elsewhere and pass --checkpoint FILE "
            "(Python: checkpoint=...), or use --model offline (weights that ship with vecclf's dependencies)."
        )
