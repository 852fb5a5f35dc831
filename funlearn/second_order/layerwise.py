"""Per-sample gradients layer by layer, from each layer's input and output gradient (no ``vmap``).

With BatchNorm in eval mode the samples of a batch are independent, so the gradient of
``sum_b l_b`` with respect to a layer's output, restricted to sample ``b``, is the gradient of
``l_b`` alone: ``G_b = d l_b / d out_b``. One forward (recording each layer's input ``A``) and one
backward to the layer outputs give every ``G``; the per-sample parameter gradients then follow from
closed forms (Goodfellow 2015; Opacus' grad samplers; Rochette et al. 2019):

- ``Linear``: ``dW_b = G_b^T A_b`` (``(out, in)``, summed over any middle dims), ``db_b = sum G_b``;
- ``Conv2d``: ``dW_b = G_b U_b^T`` with ``U_b = unfold(A_b)`` ``(C_in k_h k_w, L)`` and ``G_b``
  ``(C_out, L)``, per group; or the same quantity as the weight gradient of a convolution with
  ``groups = B * groups`` ("expanded"), which is faster on CPU for large feature maps;
- ``BatchNorm`` (eval), ``GroupNorm``, ``LayerNorm``: ``dw_b = sum G_b * xhat_b``, ``db_b = sum G_b``
  with ``xhat`` the normalised input;
- any other leaf module with parameters: ``vmap`` over the batch of the module's own ``vjp``.

The backward does not form the batch weight gradients at all (only layer-output gradients are
requested), so this costs about one forward plus one backward plus the per-sample products.

Requirements, checked by :meth:`LayerwiseEngine.validate`: every parameter belongs to a leaf module
that uses it only inside its own ``forward`` and is called with one tensor. ``strategy="auto"``
validates once per model (the sum of the per-sample gradients must equal the batch gradient) and
falls back to ``vmap`` otherwise.
"""

from __future__ import annotations

import copy
import math
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.func import functional_call

from funlearn import tree
from funlearn.model import Buffers, FunctionalModel, Params

__all__ = ["LayerwiseEngine", "layerwise_engine"]

# Sums of squares are formed in row blocks of at most this many elements (128 MB in float32), in
# one buffer reused across blocks, layers and cotangents: fresh pages cost more than the product
# (a 1.2 GB batched matmul measured 250 ms into new memory, 80 ms into touched memory, on CPU).
_BLOCK_ELEMENTS = 1 << 25


class _Workspace:
    """A growable scratch buffer that lives for one engine call."""

    def __init__(self) -> None:
        self.buf: Tensor | None = None

    def get(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        n = math.prod(shape)
        if self.buf is None or self.buf.numel() < n or self.buf.dtype != like.dtype or self.buf.device != like.device:
            self.buf = torch.empty(n, dtype=like.dtype, device=like.device)
        return self.buf[:n].view(shape)

    def owns(self, t: Tensor) -> bool:
        return self.buf is not None and t.untyped_storage().data_ptr() == self.buf.untyped_storage().data_ptr()


class _Record(NamedTuple):
    name: str  # module name ("" for the root)
    module: nn.Module
    inp: Tensor  # detached layer input (B, ...)
    out: Tensor  # layer output, in the autograd graph


def _sum_to_channels(t: Tensor) -> Tensor:
    """(B, C, *spatial) -> (B, C): sum over everything after the channel dim."""
    return t.flatten(2).sum(-1) if t.ndim > 2 else t


class _Rule:
    """How to turn (input A, output gradient G) into per-sample gradients of a module's params."""

    def grads(self, m: nn.Module, a: Tensor, g: Tensor, p: Params, b: Buffers,
              work: _Workspace | None = None) -> dict[str, Tensor]:  # fmt: skip
        """``{local name: (B, *shape)}``; a rule may place its largest result in ``work``."""
        raise NotImplementedError

    def sq_norms(self, m: nn.Module, a: Tensor, g: Tensor, p: Params, b: Buffers) -> Tensor:
        """(B,): sum over this module's params of ``||grad_b||^2``."""
        return sum(t.flatten(1).square().sum(1) for t in self.grads(m, a, g, p, b).values())

    def sq_sum(self, m: nn.Module, a: Tensor, g: Tensor, p: Params, b: Buffers, work: _Workspace) -> dict[str, Tensor]:
        """``sum_b grad_b ** 2`` per param, in row blocks of at most ``_BLOCK_ELEMENTS``."""
        rows = max(1, _BLOCK_ELEMENTS // max(sum(t.numel() for t in p.values()), 1))
        total: dict[str, Tensor] = {}
        for start in range(0, a.shape[0], rows):
            part = self.grads(m, a[start : start + rows], g[start : start + rows], p, b, work)
            for k, t in part.items():
                s = (t.square_() if work.owns(t) else t.square()).sum(0)
                total[k] = s if k not in total else total[k].add_(s)
        return total


class _LinearRule(_Rule):
    def grads(self, m, a, g, p, b, work=None):
        out = {"weight": torch.einsum("b...o,b...i->boi", g, a)}
        if "bias" in p:
            out["bias"] = g.reshape(g.shape[0], -1, g.shape[-1]).sum(1)
        return out

    def sq_norms(self, m, a, g, p, b):
        if a.ndim != 2:  # a sequence dim couples the rows: no factorisation
            return super().sq_norms(m, a, g, p, b)
        g2 = g.square().sum(1)
        return g2 * a.square().sum(1) + (g2 if "bias" in p else 0)

    def sq_sum(self, m, a, g, p, b, work):
        if a.ndim != 2:
            return super().sq_sum(m, a, g, p, b, work)
        g2 = g.square()  # (g_o a_i)^2 = g_o^2 a_i^2: one matmul, nothing per sample
        out = {"weight": g2.T @ a.square()}
        if "bias" in p:
            out["bias"] = g2.sum(0)
        return out


class _Conv2dRule(_Rule):
    """``nn.Conv2d`` with integer padding; ``algorithm`` "unfold", "expanded" or "auto"."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm

    @staticmethod
    def _pad(m: nn.Conv2d, a: Tensor) -> tuple[Tensor, tuple[int, int]]:
        if m.padding_mode == "zeros":
            return a, m.padding
        return F.pad(a, m._reversed_padding_repeated_twice, mode=m.padding_mode), (0, 0)

    def _choose(self, m: nn.Conv2d, a: Tensor, g: Tensor) -> str:
        if self.algorithm != "auto":
            return self.algorithm
        # Measured on CPU (2 cores, ResNet-18 and small-CNN layers at batch 128): the grouped-conv
        # weight gradient is 1.5-4.5x faster for stride-1 convs with several input channels on
        # feature maps of >= 128 positions; unfold + batched matmul wins on smaller maps, strided
        # convs and 1-channel inputs. Elsewhere unfold + bmm, the shape GPU batched matmuls suit.
        large = g.shape[-1] * g.shape[-2] >= 128
        expanded = a.device.type == "cpu" and large and m.stride == (1, 1) and m.in_channels > m.groups
        return "expanded" if expanded else "unfold"

    def _unfold(self, m: nn.Conv2d, a: Tensor) -> Tensor:
        """``F.unfold(a)`` per group, ``(B, groups, C_in/groups * k_h * k_w, L)``, as a strided
        window view of the padded input copied once (5-30x faster than ``F.unfold`` on CPU here)."""
        a, (ph, pw) = self._pad(m, a)
        if ph or pw:
            a = F.pad(a, (pw, pw, ph, ph))
        windows = a
        for dim, k, s, d in ((2, m.kernel_size[0], m.stride[0], m.dilation[0]), (3, m.kernel_size[1], m.stride[1], m.dilation[1])):
            windows = windows.unfold(dim, d * (k - 1) + 1, s)[..., ::d]  # (B, C, H', W', k_h, k_w) at the end
        return rearrange(windows, "b (g c) h w kh kw -> b g (c kh kw) (h w)", g=m.groups)

    def grads(self, m, a, g, p, b, work=None):
        n = a.shape[0]
        if self._choose(m, a, g) == "expanded":
            a_pad, padding = self._pad(m, a.contiguous())
            g = g.contiguous()
            w = torch.nn.grad.conv2d_weight(
                a_pad.reshape(1, -1, *a_pad.shape[2:]), (n * m.out_channels, *m.weight.shape[1:]),
                g.reshape(1, -1, *g.shape[2:]), stride=m.stride, padding=padding,
                dilation=m.dilation, groups=n * m.groups,
            )  # fmt: skip
            w = w.reshape(n, *m.weight.shape)
        elif m.groups == 1 and g.is_contiguous(memory_format=torch.channels_last) and \
                m.weight[0].numel() < g.shape[-1] * g.shape[-2]:  # fmt: skip
            # few weights per output channel, many positions: read G in place as (B, L, O) and
            # transpose the small (B, K, O) product rather than copying G to (B, O, L)
            u = self._unfold(m, a)[:, 0]
            w = (u @ g.permute(0, 2, 3, 1).reshape(n, -1, m.out_channels)).transpose(1, 2)
            w = w.reshape(n, *m.weight.shape)
        else:
            u = self._unfold(m, a)
            gg = rearrange(g, "b (g o) h w -> b g o (h w)", g=m.groups)
            out = None if work is None else work.get((n, m.groups, gg.shape[2], u.shape[2]), g)
            w = torch.matmul(gg, u.transpose(-1, -2), out=out).reshape(n, *m.weight.shape)
        out = {"weight": w}
        if "bias" in p:
            out["bias"] = _sum_to_channels(g)
        return out

    def sq_norms(self, m, a, g, p, b):
        # Gram ("ghost norm") form ||G U^T||_F^2 = <G^T G, U^T U>: cheaper when L^2 (O + K) < O K L.
        length, k = g.shape[-1] * g.shape[-2], m.weight[0].numel()
        if m.groups != 1 or length * (m.out_channels + k) >= m.out_channels * k:
            return super().sq_norms(m, a, g, p, b)
        u = self._unfold(m, a)[:, 0]  # (B, K, L)
        gg = g.flatten(2)  # (B, O, L)
        norms = (gg.transpose(1, 2) @ gg).mul_(u.transpose(1, 2) @ u).sum((1, 2))
        return norms + (_sum_to_channels(g).square().sum(1) if "bias" in p else 0)


class _NormRule(_Rule):
    """Affine normalisation ``y = xhat * w + b`` with ``xhat`` independent of ``w, b`` per sample."""

    def _xhat(self, m: nn.Module, a: Tensor, b: Buffers) -> Tensor:
        if isinstance(m, nn.GroupNorm):
            return F.group_norm(a, m.num_groups, eps=m.eps)
        if isinstance(m, nn.LayerNorm):
            return F.layer_norm(a, m.normalized_shape, eps=m.eps)
        return F.batch_norm(a, b["running_mean"], b["running_var"], training=False, eps=m.eps)

    def grads(self, m, a, g, p, b, work=None):
        if isinstance(m, nn.LayerNorm):  # params have the trailing normalized_shape
            lead = g.ndim - len(m.normalized_shape)
            reduce = lambda t: t.sum(tuple(range(1, lead))) if lead > 1 else t
        else:
            reduce = _sum_to_channels
        out = {}
        if "weight" in p:
            out["weight"] = reduce(g * self._xhat(m, a, b))
        if "bias" in p:
            out["bias"] = reduce(g)
        return out


class _VmapRule(_Rule):
    """Any other per-sample leaf module: ``vmap`` over samples of the module's own ``vjp``."""

    def grads(self, m, a, g, p, b, work=None):
        def one(ai: Tensor, gi: Tensor) -> Params:
            _, vjp_fn = torch.func.vjp(lambda q: functional_call(m, (q, b), (ai.unsqueeze(0),)), p)
            return vjp_fn(gi.unsqueeze(0))[0]

        return torch.func.vmap(one)(a, g)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _rule_for(m: nn.Module, conv_algorithm: str) -> _Rule | str:
    """The rule for a leaf module with parameters, or why the layer-wise path cannot handle it."""
    kind = type(m)
    if kind is nn.Linear:
        return _LinearRule()
    if kind is nn.Conv2d:
        return _Conv2dRule(conv_algorithm) if not isinstance(m.padding, str) else _VmapRule()
    if kind in _BATCH_NORMS:
        if not m.track_running_stats:
            return f"{kind.__name__} without running statistics normalises over the batch in eval mode"
        return _NormRule()
    if kind in (nn.GroupNorm, nn.LayerNorm):
        return _NormRule()
    return _VmapRule()


class LayerwiseEngine:
    """Per-sample gradients of a :class:`~funlearn.model.FunctionalModel` in eval mode, by layer.

    Holds a private copy of the architecture on the ``meta`` device with forward hooks (the user's
    module and the model's own copies are never hooked). ``supported`` says whether the model's
    structure fits (see the module docstring); ``reason`` says why not.
    """

    def __init__(self, model: FunctionalModel, conv_algorithm: str = "auto", channels_last: bool = True) -> None:
        if conv_algorithm not in ("auto", "unfold", "expanded"):
            raise ValueError(f"conv_algorithm must be 'auto', 'unfold' or 'expanded', got {conv_algorithm!r}")
        self._model = weakref.ref(model)  # the engine cache is keyed by the model: no cycle
        self.channels_last = channels_last
        self.module = copy.deepcopy(model.module).to("meta").eval()
        self._local = threading.local()
        self.rules: dict[str, _Rule] = {}
        self.reason = ""
        self.validated = False
        if channels_last:
            for m in self.module.modules():
                m.register_forward_hook(self._layout)
        for name, m in self.module.named_modules():
            if not any(True for _ in m.parameters(recurse=False)):
                continue
            if any(True for _ in m.children()):
                self.reason = f"module {name!r} owns parameters and has submodules"
                break
            rule = _rule_for(m, conv_algorithm)
            if isinstance(rule, str):
                self.reason = f"module {name!r}: {rule}"
                break
            self.rules[name] = rule
            m.register_forward_hook(self._record)
        self.owner = {f"{n}.{k}" if n else k: (n, k) for n in self.rules
                      for k, _ in self.module.get_submodule(n).named_parameters(recurse=False)}  # fmt: skip
        self._names = {m: n for n, m in self.module.named_modules()}

    @property
    def supported(self) -> bool:
        return not self.reason

    @property
    def model(self) -> FunctionalModel:
        model = self._model()
        if model is None:
            raise RuntimeError("the FunctionalModel of this LayerwiseEngine no longer exists")
        return model

    def _record(self, m: nn.Module, args: tuple, out: object) -> None:
        records = getattr(self._local, "records", None)
        if records is None:  # not inside forward(): e.g. a _VmapRule re-running the module
            return
        if len(args) != 1 or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
            raise _Unsupported(f"{type(m).__name__} is not called with one tensor returning one tensor")
        records.append(_Record(self._names[m], m, args[0].detach(), out))

    def _layout(self, m: nn.Module, args: tuple, out: object) -> Tensor | None:
        """Keep 4-D activations AND their gradients channels-last: a 1-channel input makes the conv
        answer in NCHW, and a Flatten's backward returns NCHW gradients; mixed layouts make CPU
        pooling and ReLU backward 4-10x slower."""
        if getattr(self._local, "records", None) is None or not self._local.channels_last:
            return None
        if not isinstance(out, Tensor) or out.ndim != 4:
            return None
        out = out.contiguous(memory_format=torch.channels_last)
        if out.requires_grad:
            out.register_hook(lambda g: g.contiguous(memory_format=torch.channels_last))
        return out

    def forward(self, params: Params, buffers: Buffers, x: Tensor) -> tuple[Tensor, list[_Record]]:
        """Eval-mode logits (with graph to the layer outputs) and the layer records, in call order."""
        missing = set(self.owner) - set(params)
        if missing or len(params) != len(self.owner):
            raise ValueError(f"params do not match the model: missing {sorted(missing)}, "
                             f"unexpected {sorted(set(params) - set(self.owner))}")  # fmt: skip
        x = self.model.normalize(x)
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self._local.channels_last = self.channels_last and x.ndim == 4 and x.device.type == "cpu"
        if self._local.channels_last:
            # Measured on CPU: a small CNN's forward is 3.3x faster in channels_last (max-pooling
            # alone 8x); only layer-output gradients are taken, so the copies cost nothing later.
            x = x.contiguous(memory_format=torch.channels_last)
            leaves = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                      for k, v in leaves.items()}  # fmt: skip
        self._local.records = []
        try:
            with torch.enable_grad():
                logits = functional_call(self.module, (leaves, buffers), (x,))
            return logits, self._local.records
        finally:
            self._local.records = None

    def _module_params(self, rec: _Record, params: Params, buffers: Buffers) -> tuple[Params, Buffers]:
        prefix = f"{rec.name}." if rec.name else ""
        p = {k: params[prefix + k] for k, _ in rec.module.named_parameters(recurse=False)}
        b = {k: buffers[prefix + k] for k, _ in rec.module.named_buffers(recurse=False)}
        return p, b

    def backprops(
        self, params: Params, buffers: Buffers, x: Tensor, cotangents: Callable[[Tensor], Iterable[Tensor]]
    ) -> Iterator[list[tuple[_Record, Tensor]]]:
        """For each cotangent ``U`` (B, C) that ``cotangents(logits)`` yields: the layers' ``(record, G)``
        with ``G = J^T U`` restricted to that layer's output.

        One forward, then one backward per cotangent (a Python loop over cotangents with
        ``retain_graph`` measured 2x faster than ``is_grads_batched`` on CPU).
        """
        logits, records = self.forward(params, buffers, x)
        outs = [r.out for r in records]
        us = list(cotangents(logits.detach()))
        for i, u in enumerate(us):
            gs = torch.autograd.grad(logits, outs, u, retain_graph=i < len(us) - 1, allow_unused=True)
            yield [(r, torch.zeros_like(r.out) if g is None else g) for r, g in zip(records, gs)]

    def _per_module(self, pairs, params, buffers, fn) -> dict[str, dict[str, Tensor] | Tensor]:
        """``{module name: fn(rule, module, A, G, p, b)}``; a module called twice (shared weights)
        is rejected, since its per-sample gradient would be a sum over calls before squaring."""
        out = {}
        for rec, g in pairs:
            if rec.name in out:
                raise _Unsupported(f"module {rec.name!r} is called more than once (shared weights)")
            p, b = self._module_params(rec, params, buffers)
            out[rec.name] = fn(self.rules[rec.name], rec.module, rec.inp, g, p, b)
        return out

    def grads(self, params: Params, buffers: Buffers, x: Tensor, cotangent: Tensor | Callable) -> Params:
        """Per-sample gradients ``{name: (B, *shape)}`` of ``<U_b, logits_b>`` for one cotangent."""
        cots = cotangent if callable(cotangent) else (lambda _z: [cotangent])
        (pairs,) = list(self.backprops(params, buffers, x, cots))
        per = self._per_module(pairs, params, buffers, lambda r, *a: r.grads(*a))
        return self._assemble(per, params, lambda v: v.new_zeros((x.shape[0],) + v.shape))

    def sq_sum(self, params: Params, buffers: Buffers, x: Tensor, cotangents: Callable) -> Params:
        """``sum_{u, b} (J_b^T U_b)^2`` over every cotangent ``U`` and sample ``b``: ``{name: shape}``."""
        total: Params = {}
        work = _Workspace()
        for pairs in self.backprops(params, buffers, x, cotangents):
            per = self._per_module(pairs, params, buffers, lambda r, *a: r.sq_sum(*a, work))
            part = self._assemble(per, params, torch.zeros_like)
            for k, v in part.items():
                total[k] = v if k not in total else total[k].add_(v)
        return total

    def sq_norms(self, params: Params, buffers: Buffers, x: Tensor, cotangent: Tensor | Callable) -> Tensor:
        """``||J_b^T U_b||^2`` per sample (B,) for one cotangent."""
        cots = cotangent if callable(cotangent) else (lambda _z: [cotangent])
        (pairs,) = list(self.backprops(params, buffers, x, cots))
        per = self._per_module(pairs, params, buffers, lambda r, *a: r.sq_norms(*a))
        return torch.stack(list(per.values())).sum(0) if per else x.new_zeros(x.shape[0])

    def _assemble(self, per: dict, params: Params, zeros: Callable[[Tensor], Tensor]) -> Params:
        """Per-module results keyed by full parameter name, in ``params`` order; zeros for the
        parameters of a module the forward never called."""
        out = {}
        for full in params:
            mod, local = self.owner[full]
            got = per.get(mod, {}).get(local)
            out[full] = zeros(params[full]) if got is None else got
        return out

    def validate(self, params: Params, buffers: Buffers, x: Tensor, y: Tensor) -> bool:
        """Check the structural assumptions on a few samples, in float64 (so that float32 rounding,
        large when predictions saturate, cannot hide or fake a mismatch): ``sum_b grad_b`` must equal
        autograd's gradient of the summed cross-entropy. Sets and returns ``supported``."""
        if not self.supported:
            return False
        wide = lambda t: t.double() if t.is_floating_point() else t
        params = {k: wide(v.detach()) for k, v in params.items()}
        buffers = {k: wide(v) for k, v in buffers.items()}
        x, y = wide(x[:4]), y[:4]

        def cot(z: Tensor) -> list[Tensor]:
            return [torch.softmax(z, -1) - F.one_hot(y, z.shape[-1]).to(z.dtype)]

        try:
            per = self.grads(params, buffers, x, cot)
        except _Unsupported as err:
            self.reason = str(err)
            return False
        leaves = {k: v.requires_grad_(True) for k, v in tree.clone(params).items()}
        with torch.enable_grad():
            loss = F.cross_entropy(self.model.logits(leaves, buffers, x), y, reduction="sum")
            ref = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        for (k, v), r in zip(leaves.items(), ref):
            r = torch.zeros_like(v) if r is None else r
            scale = float(per[k].flatten(1).norm(dim=1).sum())  # the terms' size: their sum may cancel
            if float((per[k].sum(0) - r).norm()) > 1e-8 * scale + 1e-12:
                self.reason = f"per-sample gradients of {k!r} do not sum to the batch gradient " \
                              "(is the parameter used outside its module's forward?)"
                return False
        self.validated = True
        return True


class _Unsupported(RuntimeError):
    """The model's forward does something the layer-wise path cannot follow."""


_ENGINES: weakref.WeakKeyDictionary[FunctionalModel, LayerwiseEngine] = weakref.WeakKeyDictionary()


def layerwise_engine(model: FunctionalModel) -> LayerwiseEngine:
    """The (cached) :class:`LayerwiseEngine` of ``model``."""
    engine = _ENGINES.get(model)
    if engine is None:
        engine = _ENGINES[model] = LayerwiseEngine(model)
    return engine
