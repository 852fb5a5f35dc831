"""Fisher forgetting (Golatkar, Achille & Soatto, "Eternal Sunshine of the Spotless Net", CVPR 2020).

Add Gaussian noise shaped by the retain set's diagonal Fisher ``F``: directions the retain data
barely constrains (small ``F``) get large noise, destroying what only the forget data supported.
Per parameter tensor, following the paper's code (``get_mean_var``; methods.md 1.17):

1. ``v = min(1 / (F + eps), 1e3)``, and ``min(v, 1e2)`` for the classifier's output layer;
2. ``v = alpha * v``; for tensors with ``ndim > 1``, ``v`` is averaged over dim 1 (input
   channels/columns; kernel positions are not averaged) and broadcast back;
3. ``mu = theta``; for class-wise forgetting the output layer's rows of the forgotten classes get
   ``mu = 0`` and ``v = class_row_variance`` (1e-4 in the paper: it does not scale with alpha, by
   design: the row is reset to a small random vector whatever the noise level, defect N3);
4. ``v = 10 v`` for the output layer and for every other 1-D tensor (biases, norm affines);
5. ``theta' = mu + sqrt(v) * xi``, ``xi ~ N(0, I)`` from ``funlearn.random.key(seed, alpha_i, repeat)``.

``F`` is the per-sample true Fisher by default (the paper used batch size 1), not torchunlearn's
batch-mean estimator (N1). The output layer is found as the ``nn.Linear`` whose output IS the logits,
not "any tensor whose first dim equals C" (N2). The noise level ``alpha`` is chosen over a grid with
``repeats`` seeded draws each, by a replaceable rule on evaluation data
(:mod:`funlearn.second_order.selection`).

Cost: one forward and C backward passes per retain batch for ``F`` (``fisher="true"``; "mc" with
one sample per input costs one backward), plus one evaluation pass over ``eval_data`` per candidate.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from funlearn.model import Buffers, FunctionalModel, Params
from funlearn.random import key
from funlearn.second_order.fisher import FisherKind, fisher_diagonal
from funlearn.second_order.selection import (
    ClosedFormResult,
    EvalData,
    SelectionRule,
    check_eval_data,
    default_rule,
    evaluate_accuracy,
    search_candidates,
)

__all__ = ["output_layer", "fisher_noise", "fisher_forget"]


def output_layer(model: FunctionalModel, params: Params, buffers: Buffers, x: Tensor) -> str:
    """Name of the ``nn.Linear`` module whose output is the model's logits for input ``x``."""
    module = copy.deepcopy(model.module).to("meta").eval()
    seen: list[tuple[str, Tensor]] = []
    for name, m in module.named_modules():
        if type(m) is nn.Linear:
            m.register_forward_hook(lambda _m, _a, out, name=name: seen.append((name, out)))
    with torch.no_grad():
        logits = functional_call(module, (params, buffers), (model.normalize(x),))
    for name, out in seen:
        if out is logits:
            return name
    raise ValueError("could not find the nn.Linear that produces the logits; pass head='<module name>'")


def fisher_noise(
    params: Params,
    fisher: Params,
    alpha: float,
    *,
    head: str,
    forget_classes: Sequence[int] | None = None,
    class_row_variance: float = 1e-4,
    eps: float = 1e-8,
    generator: torch.Generator | None = None,
) -> tuple[Params, Params]:
    """The noise's mean and variance per tensor (steps 1-4 above); with ``generator``, also sample.

    Returns ``(mu, var)``, or ``(theta', var)`` when ``generator`` is given. ``head`` is the output
    layer's module name (``head + ".weight"`` is (C, D), ``head + ".bias"`` (C,) if present).
    """
    head_keys = {f"{head}.weight", f"{head}.bias"} & set(params)
    if f"{head}.weight" not in params:
        raise ValueError(f"head={head!r}: params has no {head + '.weight'!r}")
    mean, var = {}, {}
    for k, p in params.items():
        v = (1.0 / (fisher[k] + eps)).clamp(max=1e3)
        if k in head_keys:
            v = v.clamp(max=1e2)
        v = alpha * v
        if p.ndim > 1:
            v = v.mean(dim=1, keepdim=True).expand_as(p).clone()
        mu = p.detach().clone()
        if k in head_keys and forget_classes:
            rows = torch.as_tensor(list(forget_classes), device=p.device)
            mu[rows], v[rows] = 0.0, class_row_variance
        if k in head_keys or p.ndim == 1:
            v = 10.0 * v
        mean[k], var[k] = mu, v
    if generator is None:
        return mean, var
    noise = {}
    for k in sorted(var):  # sorted: the draws never depend on the params' dict order
        noise[k] = torch.randn(var[k].shape, generator=generator, dtype=var[k].dtype, device=generator.device)
    return {k: mean[k] + var[k].sqrt() * noise[k].to(var[k].device) for k in params}, var


def fisher_forget(
    model: FunctionalModel,
    params: Params,
    buffers: Buffers,
    retain_data: Iterable[tuple[Tensor, Tensor]],
    *,
    eval_data: EvalData,
    alphas: Sequence[float] = (1e-9, 1e-8, 1e-7, 1e-6),
    repeats: int = 1,
    seed: int = 0,
    forget_classes: Sequence[int] | None = None,
    head: str | None = None,
    fisher: Params | None = None,
    fisher_kind: FisherKind = "true",
    class_row_variance: float = 1e-4,
    selection: SelectionRule | None = None,
    progress: bool = True,
) -> ClosedFormResult:
    """Fisher forgetting with ``alpha`` chosen over ``alphas`` x ``repeats`` seeded draws.

    ``retain_data`` yields ``(x, y)`` batches for the Fisher (ignored when ``fisher`` is given);
    ``eval_data`` names the evaluation sets the rule reads (default rule: class-wise when
    ``forget_classes`` is given, else random forgetting, which needs a held-out ``"test"`` set).
    Buffers are unchanged. ``result.info["fisher"]`` holds ``F`` for reuse.
    """
    rule = selection if selection is not None else default_rule(forget_classes)
    check_eval_data(eval_data, rule)
    if not alphas or any(a < 0 for a in alphas):
        raise ValueError(f"alphas must be a non-empty list of non-negative noise levels, got {alphas!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if head is None:
        x0 = next(iter(next(iter(eval_data.values()))))[0][:1]
        head = output_layer(model, params, buffers, x0)
    if fisher is None:
        fkey = key(seed, -1) if fisher_kind == "mc" else None  # a stream apart from the candidates' (i >= 0)
        fisher = fisher_diagonal(model, params, buffers, retain_data, fisher_kind, key=fkey, progress=progress)
    original = evaluate_accuracy(model, params, buffers, eval_data)

    def candidates():
        for i, alpha in enumerate(alphas):
            for r in range(repeats):
                noisy, _ = fisher_noise(params, fisher, alpha, head=head, forget_classes=forget_classes,
                                        class_row_variance=class_row_variance, generator=key(seed, i, r))  # fmt: skip
                yield {"alpha": float(alpha), "repeat": r}, noisy

    result = search_candidates(model, buffers, candidates(), eval_data, rule, original,
                               total=len(alphas) * repeats, progress=progress)  # fmt: skip
    result.info.update(fisher=fisher, head=head)
    return result
