"""Safe, atomic files: params, buffers and any flat dict of tensors, plus JSON metadata.

Format: safetensors. A file holds tensors under prefixed keys (``params/<name>``,
``buffers/<name>``) and a string-to-string metadata header; nothing is ever unpickled. Files written
by ``torch.save`` are accepted for reading only through ``torch.load(..., weights_only=True)``,
which refuses pickled Python objects.

Writes are atomic: the bytes go to a temporary file in the destination folder, are flushed and
fsynced, then renamed over the destination, so a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import Tensor
from torch.utils import _pytree as pytree

from funlearn.model import Buffers, FunctionalModel, Params

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "save_tensors",
    "load_tensors",
    "save_params",
    "load_params",
    "CheckpointError",
    "state_to_tensors",
    "tensors_to_state",
]

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A file that funlearn refuses to load, with the reason and the fix in the message."""


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_tensors(
    path: PathLike, tensors: Mapping[str, Tensor], metadata: Mapping[str, Any] | None = None
) -> None:
    """Atomically save a flat ``{name: tensor}`` dict; ``metadata`` values are stored as JSON."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, _st_save(flat, metadata=meta))


def _read_safetensors(data: bytes) -> tuple[dict[str, Tensor], dict[str, Any]]:
    loaded = _st_load(data)
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    raw_meta = header.get("__metadata__", {}) or {}
    tensors = {k: loaded[k] for k in header if k != "__metadata__"}  # the file's order, not a hash map's
    return tensors, {k: json.loads(v) for k, v in raw_meta.items()}


def _read_torch_file(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects, not only tensors "
            f"({str(err).splitlines()[0]}). funlearn loads tensors only; re-save the tensors with "
            "funlearn.save_params (safetensors) or torch.save of a plain dict of tensors."
        ) from err
    if isinstance(obj, Mapping) and len(obj) == 1 and isinstance(next(iter(obj.values())), Mapping):
        obj = next(iter(obj.values()))  # {"rmodel": state_dict} style wrappers
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} does not hold a flat dict of tensors (found {type(obj).__name__}); "
            "save a state_dict-like dict of tensors"
        )
    return dict(obj)


def load_tensors(path: PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load ``(tensors, metadata)`` from a safetensors file (or a tensors-only ``torch.save``).

    Raises :class:`CheckpointError` for a missing file, a truncated or foreign file, or a file that
    would need unpickling of arbitrary objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    data = path.read_bytes()
    try:
        return _read_safetensors(data)
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as st_err:
        if path.suffix == ".safetensors":
            raise CheckpointError(f"{path} is not a valid safetensors file ({st_err})") from st_err
    return _read_torch_file(path), {}


def save_params(
    path: PathLike,
    params: Params,
    buffers: Buffers | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Atomically save params (and buffers) as ``params/<name>``/``buffers/<name>`` tensors."""
    tensors = {f"params/{k}": v for k, v in params.items()}
    tensors.update({f"buffers/{k}": v for k, v in (buffers or {}).items()})
    save_tensors(path, tensors, metadata)


def _validate(kind: str, got: dict[str, Tensor], ref: Mapping[str, Tensor], path: Path) -> None:
    problems = []
    missing, unexpected = sorted(set(ref) - set(got)), sorted(set(got) - set(ref))
    if missing:
        problems.append(f"missing {kind} {missing}")
    if unexpected:
        problems.append(f"unexpected {kind} {unexpected}")
    for k in sorted(set(ref) & set(got)):
        if got[k].shape != ref[k].shape:
            problems.append(f"{kind} {k!r} has shape {tuple(got[k].shape)}, expected {tuple(ref[k].shape)}")
        if got[k].dtype != ref[k].dtype:
            problems.append(f"{kind} {k!r} has dtype {got[k].dtype}, expected {ref[k].dtype}")
    if problems:
        raise CheckpointError(f"{path} does not match the model: " + "; ".join(problems))


def load_params(
    path: PathLike,
    reference: FunctionalModel | tuple[Params, Buffers] | None = None,
    *,
    device: torch.device | str | None = None,
) -> tuple[Params, Buffers, dict[str, Any]]:
    """Load ``(params, buffers, metadata)`` and check them against ``reference``.

    ``reference`` is a :class:`FunctionalModel` (its architecture's names, shapes and dtypes) or a
    ``(params, buffers)`` pair. Every missing or unexpected key, wrong shape and wrong dtype is
    named in the error. Files from ``torch.save(module.state_dict())`` are split into params and
    buffers using the reference's names.
    """
    path = Path(path)
    tensors, metadata = load_tensors(path)
    if reference is None:
        ref_params: Mapping[str, Tensor] | None = None
        ref_buffers: Mapping[str, Tensor] = {}
    elif isinstance(reference, FunctionalModel):
        ref_params = dict(reference.module.named_parameters())
        ref_buffers = dict(reference.module.named_buffers())
    else:
        ref_params, ref_buffers = reference
    if any(k.startswith(("params/", "buffers/")) for k in tensors):
        params = {k[7:]: v for k, v in tensors.items() if k.startswith("params/")}
        buffers = {k[8:]: v for k, v in tensors.items() if k.startswith("buffers/")}
    elif ref_params is not None:
        params = {k: v for k, v in tensors.items() if k not in ref_buffers}
        buffers = {k: v for k, v in tensors.items() if k in ref_buffers}
    else:
        raise CheckpointError(f"{path} is a plain state dict; pass the model as reference to split it")
    if ref_params is not None:
        _validate("params", params, ref_params, path)
        persistent = set(reference.module.state_dict()) if isinstance(reference, FunctionalModel) else None
        expected_buffers = {
            k: v for k, v in ref_buffers.items() if persistent is None or k in persistent or k in buffers
        }
        _validate("buffers", buffers, expected_buffers, path)
        for k, v in ref_buffers.items():  # non-persistent buffers are not in state dicts
            buffers.setdefault(k, v.detach().clone())
        params = {k: params[k] for k in ref_params}  # the model's order: code that walks the dict in
        buffers = {k: buffers[k] for k in ref_buffers}  # order (e.g. drawing noise) stays reproducible
    if device is not None:
        params = {k: v.to(device) for k, v in params.items()}
        buffers = {k: v.to(device) for k, v in buffers.items()}
    return params, buffers, metadata


def state_to_tensors(state: Any) -> dict[str, Tensor]:
    """Flatten a pytree of tensors (a transformation or method state) to ``{path: tensor}``.

    Paths are pytree key strings such as ``"[0].trace['fc.weight']"``; with
    :func:`tensors_to_state` this round-trips any state built from NamedTuples, tuples and dicts.
    """
    leaves, _ = pytree.tree_flatten_with_path(state)
    out = {}
    for path, leaf in leaves:
        if not isinstance(leaf, Tensor):
            raise TypeError(
                f"state leaf {pytree.keystr(path)} is a {type(leaf).__name__}; states must hold only "
                "tensors (use a 0-d tensor for a counter)"
            )
        out[pytree.keystr(path)] = leaf
    return out


def tensors_to_state(template: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Rebuild a state with the structure of ``template`` from :func:`state_to_tensors` output.

    Every path, shape and dtype must match the template (for example the state freshly built by
    ``transformation.init(params)``); mismatches are named in a :class:`CheckpointError`.
    """
    leaves, spec = pytree.tree_flatten_with_path(template)
    paths = [pytree.keystr(p) for p, _ in leaves]
    missing, unexpected = sorted(set(paths) - set(tensors)), sorted(set(tensors) - set(paths))
    if missing or unexpected:
        raise CheckpointError(f"state does not match: missing {missing}, unexpected {unexpected}")
    out = []
    for path, (_, ref) in zip(paths, leaves):
        t = tensors[path]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise CheckpointError(
                f"state leaf {path} is {tuple(t.shape)}/{t.dtype}, expected {tuple(ref.shape)}/{ref.dtype}"
            )
        out.append(t.to(ref.device))
    return pytree.tree_unflatten(out, spec)
