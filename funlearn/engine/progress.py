"""A tqdm bar over the steps of a run, with the epoch, the live loss and the latest accuracies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Progress"]


class Progress:
    """``enabled=False`` prints nothing at all. ``total`` is the number of steps, when known."""

    def __init__(self, enabled: bool, total: int | None, initial: int, epochs: int | None, desc: str | None) -> None:
        self.enabled, self.epochs, self.desc = enabled, epochs, desc
        self.postfix: dict[str, str] = {}
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step", dynamic_ncols=True)

    def set_epoch(self, epoch: int) -> None:
        """Show the 1-based ``epoch`` (of the total when known) in the description."""
        of = f"/{self.epochs}" if self.epochs is not None else ""
        self.bar.set_description(f"{self.desc + ' ' if self.desc else ''}epoch {epoch}{of}", refresh=False)

    def step(self, loss: float | None) -> None:
        if not self.enabled:
            return
        if loss is not None:
            self.postfix["loss"] = f"{loss:.4g}"
        self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(1)

    def evaluation(self, record: Mapping[str, Any]) -> None:
        """Show the accuracies (``acc/retain`` as ``retain``) of an evaluation record."""
        if not self.enabled:
            return
        self.postfix.update({k[4:]: f"{v:.2f}" for k, v in record.items() if k.startswith("acc/")})
        self.bar.set_postfix(self.postfix)

    def close(self) -> None:
        self.bar.close()
