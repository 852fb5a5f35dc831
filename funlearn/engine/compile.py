"""When the engine compiles a method's step with ``torch.compile``.

``compile="auto"`` compiles on CUDA and stays eager elsewhere: on CPU the first call of a compiled
step costs seconds to tens of seconds of compilation (gcc), which small CPU runs never earn back.
``True`` always compiles, ``False`` never. The eager gradient path
(:func:`funlearn.autodiff.value_and_grad`) calls ``torch.autograd.grad``, where dynamo inserts a
graph break: the forward and the update compile, and the results agree with eager ones to float
tolerance (tested on CPU in ``tests/test_engine_compile.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["compile_step"]

F = TypeVar("F", bound=Callable)


def should_compile(compile: bool | str, device: torch.device) -> bool:
    """The policy: ``"auto"`` means "on CUDA"; booleans are taken as given."""
    if compile == "auto":
        return device.type == "cuda"
    if isinstance(compile, bool):
        return compile
    raise ValueError(f"compile must be 'auto', True or False (got {compile!r})")


def compile_step(step: F, compile: bool | str = "auto", device: torch.device | str = "cpu") -> F:
    """``torch.compile(step)`` when the policy says so for ``device``, else ``step`` itself."""
    return torch.compile(step) if should_compile(compile, torch.device(device)) else step
