"""``value_and_grad``: reverse-mode gradients of a function of a parameter tree.

Semantics are those of ``torch.func.grad_and_value(fn, has_aux=...)`` with the order swapped to
``((value, aux), grads)``: the function is pure, the inputs are not modified, and the outputs carry
no autograd history.

Two engines, one result:

- inside a ``torch.func`` transform (``vmap``, ``jvp``, ``grad``...), it *is*
  ``torch.func.grad_and_value``, so it composes (per-sample gradients, Hessian-vector products);
- in plain eager code it runs ``torch.autograd.grad`` on detached leaves. Same numbers, but on CPU
  the functorch ``grad`` transform was measured 1.3x (small CNN) to 1.6x (ResNet-18) slower for a
  full training step than autograd (``benchmarks/step_overhead.py``), so the training path uses
  autograd. Under ``torch.compile`` this is also the path AOTAutograd compiles best.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

__all__ = ["value_and_grad"]


def _detach(tree: Any) -> Any:
    return pytree.tree_map(lambda t: t.detach() if isinstance(t, Tensor) else t, tree)


def value_and_grad(fn: Callable[..., Any], *, has_aux: bool = False) -> Callable[..., Any]:
    """Return ``g(params, *args) -> ((value, aux), grads)`` (``(value, grads)`` without aux).

    ``fn(params, *args)`` must return a scalar tensor (or ``(scalar, aux)`` with ``has_aux``);
    ``params`` is a ``dict[str, Tensor]`` and ``grads`` has the same keys. Gradients are taken with
    respect to ``params`` only.
    """

    def wrapped(params: dict[str, Tensor], *args: Any, **kwargs: Any):
        if torch._C._functorch.peek_interpreter_stack() is not None:
            grads, out = torch.func.grad_and_value(fn, has_aux=has_aux)(params, *args, **kwargs)
            return out, grads
        higher_order = torch.is_grad_enabled() and any(p.requires_grad for p in params.values())
        leaves = {k: v if higher_order else v.detach().requires_grad_(True) for k, v in params.items()}
        with torch.enable_grad():
            out = fn(leaves, *args, **kwargs)
            value = out[0] if has_aux else out
            if not (isinstance(value, Tensor) and value.ndim == 0):
                raise ValueError(f"the function must return a scalar tensor to differentiate, got {value!r}")
            keys = list(leaves)
            grads = torch.autograd.grad(value, [leaves[k] for k in keys], allow_unused=True, create_graph=higher_order)
        grads = {
            k: torch.zeros_like(leaves[k]) if g is None else g for k, g in zip(keys, grads)
        }
        return (out if higher_order else _detach(out)), grads

    return wrapped
