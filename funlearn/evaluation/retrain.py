"""The retrain reference, trained once and cached on disk.

The gold standard of unlearning is a model retrained from scratch on the retain set with the
original model's recipe. It is the most expensive run of a study, so :func:`retrained_reference`
caches its params under a key made of the dataset, the forgetting scenario, the seed and the
training recipe (a stable hash of their JSON): the same key loads the cached params (never
retraining), a changed key trains again. The training time is stored with the params, so time
fractions stay meaningful on a cache hit.

Files are safetensors (:func:`funlearn.save_params`, written atomically) and are validated on
load: the stored key fields must equal the requested ones, and with ``reference`` the names,
shapes and dtypes must match the model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from funlearn import tree
from funlearn._version import __version__
from funlearn.data.scenarios import Split
from funlearn.io import CheckpointError, load_params, save_params
from funlearn.model import Buffers, FunctionalModel, Params

__all__ = ["REQUIRED_KEY_FIELDS", "RetrainedModel", "retrain_key", "retrained_reference"]

REQUIRED_KEY_FIELDS: tuple[str, ...] = ("dataset", "scenario", "seed", "recipe")


@dataclass(frozen=True, eq=False)
class RetrainedModel:
    """The retrained ``params``/``buffers``; ``time_s``: seconds its training took (when it ran);
    ``cached``: True when loaded from ``path`` without training."""

    params: Params
    buffers: Buffers
    time_s: float
    key: str
    path: Path
    cached: bool


def _canonical_fields(key_fields: Mapping[str, Any]) -> dict[str, Any]:
    """``key_fields`` as plain JSON values; a :class:`~funlearn.Split` scenario becomes its
    description plus a SHA-256 of its forget indices, so a different forget set is a different key."""
    if not isinstance(key_fields, Mapping):
        raise TypeError(f"key_fields must be a dict, got {type(key_fields).__name__}")
    missing = [k for k in REQUIRED_KEY_FIELDS if k not in key_fields]
    if missing:
        raise ValueError(
            f"key_fields lack {missing}: the cache key is made of {list(REQUIRED_KEY_FIELDS)} "
            "(recipe: a JSON-serialisable dict of everything training depends on: model, epochs, "
            "optimizer, learning rate, batch size...)"
        )
    fields = dict(key_fields)
    scenario = fields["scenario"]
    if isinstance(scenario, Split):
        forget = scenario.forget.to("cpu", torch.int64).contiguous().numpy().astype("<i8")
        fields["scenario"] = {
            "description": scenario.description,
            "forget_sha256": hashlib.sha256(forget.tobytes()).hexdigest(),
        }
    try:
        return json.loads(json.dumps(fields, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"key_fields must be JSON-serialisable (str, numbers, bools, None, lists, dicts): {err}"
        ) from err


def retrain_key(key_fields: Mapping[str, Any]) -> str:
    """The cache key: the first 16 hex digits of SHA-256 over the canonical JSON of ``key_fields``
    (sorted keys, so dict order does not matter; tuples and lists hash alike)."""
    text = json.dumps(_canonical_fields(key_fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _slug(value: Any) -> str:
    text = value["description"] if isinstance(value, dict) and "description" in value else str(value)
    return re.sub(r"[^A-Za-z0-9._]+", "_", text).strip("_")[:40] or "x"


def _cache_path(cache_dir: Path, fields: dict[str, Any], key: str, prefix: str = "retrain") -> Path:
    name = f"{_slug(prefix)}-{_slug(fields['dataset'])}-{_slug(fields['scenario'])}-seed{_slug(fields['seed'])}-{key}"
    return cache_dir / f"{name}.safetensors"


def _is_tensor_dict(x: Any) -> bool:
    return isinstance(x, Mapping) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in x.items())


def _load(path: Path, key: str, fields: dict[str, Any], reference: Any, device: Any) -> RetrainedModel:
    fix = f"delete {path} or pass refresh=True to retrain"
    try:
        params, buffers, meta = load_params(path, reference, device=device)
    except CheckpointError as err:
        raise CheckpointError(f"cached retrain reference unusable: {err}; {fix}") from err
    if meta.get("key") != key or meta.get("key_fields") != fields:
        raise CheckpointError(f"{path} was written for other key fields {meta.get('key_fields')}; {fix}")
    time_s = meta.get("time_s")
    if (
        isinstance(time_s, bool)
        or not isinstance(time_s, (int, float))
        or not math.isfinite(time_s)
        or time_s < 0
    ):
        raise CheckpointError(f"{path} has no valid training time (got {time_s!r}); {fix}")
    return RetrainedModel(params, buffers, float(time_s), key, path, cached=True)


def retrained_reference(
    cache_dir: str | os.PathLike,
    key_fields: Mapping[str, Any],
    train_fn: Callable[[], tuple[Params, Buffers]],
    *,
    reference: FunctionalModel | tuple[Params, Buffers] | None = None,
    refresh: bool = False,
    device: torch.device | str | None = None,
    prefix: str = "retrain",
) -> RetrainedModel:
    """Load the retrained model for ``key_fields`` from ``cache_dir``, or train it with ``train_fn``.

    ``key_fields`` must hold ``"dataset"``, ``"scenario"`` (a string such as ``"random:0.1"`` or the
    :class:`~funlearn.Split` itself), ``"seed"`` and ``"recipe"`` (a dict of every training setting),
    and may hold more. ``train_fn()`` trains from scratch on the retain set and returns
    ``(params, buffers)``; it is called only on a cache miss (or with ``refresh=True``), and its
    wall time is stored with the params. ``reference`` (the model, or a ``(params, buffers)``
    template) validates a cached file's names, shapes and dtypes; cached tensors load onto ``device``
    (default: the CPU). A corrupt or mismatched file raises :class:`~funlearn.CheckpointError` naming it.
    ``prefix`` starts the file name (``"original"`` caches an original model the same way).
    """
    fields = _canonical_fields(key_fields)
    key = retrain_key(fields)
    path = _cache_path(Path(cache_dir), fields, key, prefix)
    if path.exists() and not refresh:
        return _load(path, key, fields, reference, device)
    start = time.perf_counter()
    result = train_fn()
    time_s = time.perf_counter() - start
    if not (isinstance(result, tuple) and len(result) == 2 and all(_is_tensor_dict(t) for t in result)):
        raise TypeError(
            f"train_fn must return (params, buffers), two dicts of tensors; got {type(result).__name__}"
        )
    params, buffers = (dict(t) for t in result)
    if not bool(tree.all_finite(params)):
        raise ValueError("the retrained params hold NaN or inf; they were not cached (check the recipe)")
    metadata = {
        "key": key,
        "key_fields": fields,
        "time_s": time_s,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "funlearn_version": __version__,
    }
    save_params(path, params, buffers, metadata)
    return RetrainedModel(params, buffers, time_s, key, path, cached=False)
