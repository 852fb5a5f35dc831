"""Checkpoints: params, buffers, method state, counters and seed in one safetensors file.

A checkpoint file holds the tensors ``params/<name>``, ``buffers/<name>`` and ``state/<path>``
(the method state flattened by :func:`funlearn.io.state_to_tensors`) and JSON metadata:
``format`` (``"funlearn.checkpoint"``), ``version``, ``seed``, ``counters`` and whatever the loop
adds (the best record, the stop reason). Nothing is pickled; files are written atomically, so a
crash mid-write leaves the previous file intact. ``funlearn.load_params`` reads the params and
buffers of any checkpoint.

The "RNG state" is the seed plus the counters: every random draw of a run is a pure function of
``(seed, step)`` (the step's key) or ``(loader seed, epoch, batch)`` (the data order), so the
counters are all a resumed run needs.

A run directory holds ``last.safetensors`` (written at start, at every save point and at the end),
``best.safetensors`` (params, buffers and record of the best evaluation, written when it changes),
optionally ``epoch_0001.safetensors``... (after each epoch), and the history files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from funlearn.io import CheckpointError, load_params, load_tensors, save_tensors, state_to_tensors, tensors_to_state
from funlearn.model import Buffers, Params

__all__ = ["Checkpoint", "Counters", "RunDir", "load_checkpoint", "save_checkpoint"]

FORMAT = "funlearn.checkpoint"
VERSION = 1


@dataclass
class Counters:
    """Where a run is: steps taken, the current epoch (0-based) and the batches of it consumed."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    samples: int = 0
    elapsed: float = 0.0  # wall seconds over every session of the run


class Checkpoint(NamedTuple):
    params: Params
    buffers: Buffers
    state: Any
    seed: int | None
    counters: Counters
    metadata: dict[str, Any]


def save_checkpoint(
    path: str | os.PathLike,
    params: Params,
    buffers: Buffers,
    state: Any = None,
    *,
    seed: int | None = None,
    counters: Counters | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Atomically write a checkpoint (see the module docstring for the layout)."""
    tensors = {f"params/{k}": v for k, v in params.items()}
    tensors.update({f"buffers/{k}": v for k, v in buffers.items()})
    if state is not None:
        tensors.update({f"state/{k}": v for k, v in state_to_tensors(state).items()})
    meta = {"format": FORMAT, "version": VERSION, "seed": seed, "counters": asdict(counters or Counters())}
    meta.update(metadata or {})
    save_tensors(path, tensors, meta)


def load_checkpoint(
    path: str | os.PathLike, params: Params, buffers: Buffers, state: Any = None
) -> Checkpoint:
    """Read a checkpoint, checking it against templates (e.g. the initial params and ``method.init``).

    Every mismatch of names, shapes and dtypes is named in a :class:`~funlearn.io.CheckpointError`.
    Tensors are moved to the templates' devices. Without a ``state`` template the state is ``None``.
    """
    path = Path(path)
    tensors, metadata = load_tensors(path)
    if metadata.get("format") != FORMAT or int(metadata.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} is not a funlearn checkpoint of version <= {VERSION} (format {metadata.get('format')!r}, "
            f"version {metadata.get('version')!r}); use funlearn.load_params for plain parameter files"
        )
    loaded_params, loaded_buffers, _ = load_params(path, (params, buffers))
    loaded_params = {k: v.to(params[k].device) for k, v in loaded_params.items()}
    loaded_buffers = {k: v.to(buffers[k].device) for k, v in loaded_buffers.items()}
    loaded_state = None
    if state is not None:
        prefix = "state/"
        loaded_state = tensors_to_state(state, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return Checkpoint(loaded_params, loaded_buffers, loaded_state, metadata.get("seed"),
                      Counters(**metadata.get("counters", {})), metadata)  # fmt: skip


class RunDir:
    """The files of a run directory, and the overwrite/resume rules.

    A fresh run needs a missing or empty directory, or ``overwrite=True`` (which deletes the files
    funlearn writes there, and nothing else). Resuming needs ``last.safetensors``.
    """

    OWN_FILES = ("last.safetensors", "best.safetensors", "history.json", "history.csv", "steps.csv", "history.png")

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def last(self) -> Path:
        return self.path / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.path / "best.safetensors"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def epoch(self, epoch: int) -> Path:
        return self.path / f"epoch_{epoch:04d}.safetensors"

    def can_resume(self) -> bool:
        return self.last.is_file()

    def start_fresh(self, overwrite: bool) -> None:
        """Create the directory, refusing to clobber an existing one unless ``overwrite``."""
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"run_dir={str(self.path)!r} is a file, not a directory")
        if self.path.is_dir() and any(self.path.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"run_dir={str(self.path)!r} is not empty; pass overwrite=True to replace the run there, "
                    "resume=True to continue it, or choose a new directory"
                )
            for name in self.OWN_FILES:
                (self.path / name).unlink(missing_ok=True)
            for old in self.path.glob("epoch_*.safetensors"):
                old.unlink()
            shutil.rmtree(self.tensorboard, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
