"""Optional TensorBoard logging through ``torch.utils.tensorboard`` (``pip install funlearn[tensorboard]``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["TensorBoardLogger"]


def require_tensorboard() -> None:
    """Raise a clear ImportError when ``torch.utils.tensorboard`` cannot be imported."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "tensorboard logging needs the tensorboard package: pip install funlearn[tensorboard] "
            f"(or pass tensorboard=False) [{err}]"
        ) from err


class TensorBoardLogger:
    """Writes the numbers of a record as scalars at its ``step``: ``train/<name>``, ``eval/<name>``.

    ``step``, ``batch`` and ``time`` are left out (TensorBoard has its own step and wall-time axes).
    """

    SKIP = frozenset({"step", "batch", "time"})

    def __init__(self, log_dir: str | os.PathLike) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, prefix: str, record: Mapping[str, Any]) -> None:
        step = int(record["step"])
        for name, value in record.items():
            if name not in self.SKIP and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def close(self) -> None:
        self.writer.close()
