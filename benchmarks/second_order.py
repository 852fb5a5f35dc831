"""Second-order toolkit throughput, measured side by side in one process (medians of repeats).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/second_order.py [--repeats 5] [--resnet-repeats 2]
        [--only per_sample,fisher,hvp,woodfisher] [--device cpu]

Models: funlearn's small CNN and ResNet-18 (CIFAR variant, BatchNorm in eval mode; GroupNorm for
the Opacus comparison, since Opacus has no per-sample rule for BatchNorm), 1x28x28 inputs, 10
classes, batch 128. Each line prints both timings and the ratio baseline / funlearn (> 1 means
funlearn is faster), with the issue's target:

- per-sample gradients (``per_sample_grads``, strategy "auto") vs a per-sample autograd loop on the
  module, vs ``vmap(grad)`` and vs Opacus' ``GradSampleModule`` hooks (when installed; it is not a
  dependency). Targets: small CNN >= 2.5x loop and >= 1.5x Opacus; ResNet-18 >= 1.2x loop and
  >= 1.0x Opacus; on a GPU >= 10x loop.
- "true" Fisher (``fisher_diagonal``) vs the same quantity by a loop over samples and classes
  (target >= 1.5x; fewer samples for ResNet-18, whose loop needs 10 backward passes per sample),
  and "mc" (one label per sample, unbiased) vs torchunlearn's batch-mean estimator (>= 1.2x).
- HVP (reverse-over-reverse, the default, and forward-over-reverse), Gauss-Newton and empirical-Fisher products
  in units of one gradient evaluation of the same batch (target <= 2.5x).
- WoodFisher ``F^{-1} v`` with N = 1000 on the small CNN: batched per-sample gradients + Woodbury vs
  a per-sample loop with sequential Sherman-Morrison updates (the same quantity; their difference
  is printed).
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import funlearn as fl
from funlearn.models import create_model

ROWS: list[tuple[str, float, float, str, bool | None]] = []


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call; the functions alternate within each repeat (after one warm-up)."""
    for f in fns.values():
        f()
        gc.collect()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            sync(device)
            start = time.perf_counter()
            out = f()
            sync(device)
            times[k].append(time.perf_counter() - start)
            del out
            gc.collect()
    return {k: statistics.median(v) for k, v in times.items()}


def report(what: str, ours: float, base: float, target: str, ratio_min: float | None = None,
           ratio_max: float | None = None, higher_is_better: bool = True) -> None:  # fmt: skip
    ratio = base / ours if higher_is_better else ours / base
    met = None
    if ratio_min is not None:
        met = ratio >= ratio_min
    if ratio_max is not None:
        met = ratio <= ratio_max
    ROWS.append((what, ours, base, f"{ratio:.2f}x", target, met))
    flag = "" if met is None else ("  met" if met else "  NOT met")
    print(f"{what:58s} ours {ours * 1e3:9.1f} ms  base {base * 1e3:9.1f} ms  {ratio:6.2f}x  (target {target}){flag}",
          flush=True)  # fmt: skip


def batch(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device)


def make(name: str, device: torch.device, norm: str = "batch") -> nn.Module:
    kwargs = {"norm": norm} if name.startswith("resnet") else {}
    net = create_model(name, num_classes=10, in_channels=1, image_size=28, seed=0, **kwargs).to(device)
    if norm == "batch" and name.startswith("resnet"):  # non-trivial running statistics
        net.train()
        with torch.no_grad():
            net(batch(256, device, seed=9)[0])
    return net.eval()


def loop_per_sample(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The baseline a user writes: one forward/backward per sample, stored in (B, ...) tensors."""
    named = list(net.named_parameters())
    out = {k: torch.empty((len(x), *p.shape), device=p.device) for k, p in named}
    for i in range(len(x)):
        grads = torch.autograd.grad(F.cross_entropy(net(x[i : i + 1]), y[i : i + 1]), [p for _, p in named])
        for (k, _), g in zip(named, grads):
            out[k][i] = g
    return out


def opacus_per_sample(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], dict] | None:
    try:
        from opacus import GradSampleModule
    except ImportError:
        return None
    gsm = GradSampleModule(copy.deepcopy(net).train(), loss_reduction="sum")

    def run() -> dict:
        for p in gsm.parameters():
            p.grad, p.grad_sample = None, None
        F.cross_entropy(gsm(x), y, reduction="sum").backward()
        out = {k: p.grad_sample for k, p in gsm.named_parameters()}
        for p in gsm.parameters():  # only the returned dict holds the per-sample gradients
            p.grad, p.grad_sample = None, None
        return out

    return run


def bench_per_sample(name: str, norm: str, repeats: int, device: torch.device, with_opacus: bool) -> None:
    net = make(name, device, norm)
    x, y = batch(128, device)
    model, params, buffers = fl.functional(net)
    loss_fn = fl.sample_loss(model, buffers)
    fns = {
        "ours": lambda: fl.per_sample_grads(loss_fn, params, (x, y)),
        "loop": lambda: loop_per_sample(net, x, y),
        "vmap": lambda: fl.per_sample_grads(loss_fn, params, (x, y), strategy="vmap", chunk_size=32),
    }
    if with_opacus:
        run = opacus_per_sample(net, x, y)
        if run is None:
            print("opacus not installed, skipped")
        else:
            fns["opacus"] = run
    t = measure(fns, repeats, device)
    label = f"{name} ({norm}norm)"
    loop_target = {"small_cnn": 2.5, "resnet18": 1.2}[name] if device.type == "cpu" else 10.0
    report(f"per-sample grads {label}: vs loop", t["ours"], t["loop"], f">= {loop_target}x", loop_target)
    report(f"per-sample grads {label}: vs vmap(grad)", t["ours"], t["vmap"], "-")
    if "opacus" in t:
        opacus_target = {"small_cnn": 1.5, "resnet18": 1.0}[name]
        report(f"per-sample grads {label}: vs Opacus", t["ours"], t["opacus"], f">= {opacus_target}x", opacus_target)


def loop_true_fisher(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """sum_i sum_c p_ic (grad log p_ic)^2 / n by a loop over samples and classes."""
    named = list(net.named_parameters())
    total = {k: torch.zeros_like(p) for k, p in named}
    for i in range(len(x)):
        log_p = torch.log_softmax(net(x[i : i + 1]), -1)[0]
        for c in range(log_p.numel()):
            grads = torch.autograd.grad(log_p[c], [p for _, p in named], retain_graph=c < log_p.numel() - 1)
            weight = float(log_p[c].detach().exp())
            for (k, _), g in zip(named, grads):
                total[k].add_(g.square(), alpha=weight / len(x))
    return total


def bench_fisher(name: str, repeats: int, device: torch.device, n_true: int) -> None:
    net = make(name, device)
    model, params, buffers = fl.functional(net)
    x, y = batch(n_true, device)
    t = measure({"ours": lambda: fl.fisher_diagonal(model, params, buffers, [(x, y)], "true"),
                 "loop": lambda: loop_true_fisher(net, x)}, repeats, device)  # fmt: skip
    ours, ref = fl.fisher_diagonal(model, params, buffers, [(x, y)], "true"), loop_true_fisher(net, x)
    err = float(fl.tree.global_norm(fl.tree.sub(ours, ref)) / fl.tree.global_norm(ref))
    report(f"true Fisher {name}, {n_true} samples: vs loop (rel diff {err:.1e})", t["ours"], t["loop"], ">= 1.5x", 1.5)
    x, y = batch(128, device)
    data = [(x, y)]
    t = measure({"ours": lambda: fl.fisher_diagonal(model, params, buffers, data, "mc", key=fl.random.key(0)),
                 "legacy": lambda: fl.legacy_batch_mean_fisher(model, params, buffers, data)}, repeats, device)  # fmt: skip
    report(f"mc Fisher (1 label/sample) {name}: vs legacy batch-mean", t["ours"], t["legacy"], ">= 1.2x", 1.2)


def bench_hvp(name: str, repeats: int, device: torch.device) -> None:
    net = make(name, device)
    model, params, buffers = fl.functional(net)
    data = [batch(128, device)]
    v = {k: torch.randn(p.shape, generator=torch.Generator().manual_seed(1)).to(device) for k, p in params.items()}
    loss_fn = fl.batch_loss(model, buffers)
    t = measure({
        "grad": lambda: fl.data_grad(loss_fn, params, data),
        "hvp rev_rev (default)": lambda: fl.hvp(loss_fn, params, v, data),
        "hvp fwd_rev": lambda: fl.hvp(loss_fn, params, v, data, strategy="fwd_rev"),
        "ggn": lambda: fl.ggn_vp(model, params, buffers, v, data),
        "empirical fisher": lambda: fl.empirical_fisher_vp(model, params, buffers, v, data),
    }, repeats, device)  # fmt: skip
    for k in ("hvp rev_rev (default)", "hvp fwd_rev", "ggn", "empirical fisher"):
        report(f"{k} product {name}: cost in gradients", t[k], t["grad"], "<= 2.5x", ratio_max=2.5,
               higher_is_better=False)  # fmt: skip


def sherman_morrison_loop(net: nn.Module, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, damping: float) -> torch.Tensor:
    """Per-sample loop gradients, each folded in by a Sherman-Morrison update with stored factors
    ``a_s = F_{s-1}^{-1} g_s`` (the recursion torchunlearn meant, done right)."""
    params = list(net.parameters())
    n = len(x)
    a = torch.empty(n, sum(p.numel() for p in params), dtype=v.dtype, device=v.device)
    denom = torch.empty(n, dtype=v.dtype, device=v.device)
    for s in range(n):
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(F.cross_entropy(net(x[s : s + 1]), y[s : s + 1]), params)])
        a_s = g / damping - a[:s].T @ ((a[:s] @ g) / denom[:s])
        a[s], denom[s] = a_s, n + g @ a_s
    return v / damping - a.T @ ((a @ v) / denom)


def bench_woodfisher(repeats: int, device: torch.device, n: int = 1000) -> None:
    net = make("small_cnn", device)
    model, params, buffers = fl.functional(net)
    x, y = batch(n, device, seed=3)
    v = {k: torch.randn(p.shape, generator=torch.Generator().manual_seed(2)).to(device) for k, p in params.items()}
    damping = 1e-3
    loss_fn = fl.sample_loss(model, buffers)

    def ours():
        grads = fl.per_sample_grads(loss_fn, params, (x, y), chunk_size=250)
        return fl.woodfisher(grads, v, damping=damping)

    vec = fl.tree.flatten(v)[0]
    t = measure({"ours": ours, "loop": lambda: sherman_morrison_loop(net, x, y, vec, damping)}, repeats, device)
    ref = sherman_morrison_loop(net, x, y, vec, damping)
    diff = float((fl.tree.flatten(ours())[0] - ref).norm() / ref.norm())
    report(f"WoodFisher N={n} small_cnn: vs loop + Sherman-Morrison (rel diff {diff:.1e})", t["ours"], t["loop"], "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resnet-repeats", type=int, default=2)
    parser.add_argument("--only", default="per_sample,fisher,hvp,woodfisher")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    parts = set(args.only.split(","))
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if "per_sample" in parts:
        bench_per_sample("small_cnn", "batch", args.repeats, device, with_opacus=True)
        bench_per_sample("resnet18", "batch", args.resnet_repeats, device, with_opacus=False)
        bench_per_sample("resnet18", "group", args.resnet_repeats, device, with_opacus=True)
    if "fisher" in parts:
        bench_fisher("small_cnn", args.repeats, device, n_true=128)
        bench_fisher("resnet18", args.resnet_repeats, device, n_true=16)
    if "hvp" in parts:
        bench_hvp("small_cnn", args.repeats, device)
        bench_hvp("resnet18", args.resnet_repeats, device)
    if "woodfisher" in parts:
        bench_woodfisher(max(1, args.repeats // 2), device)
    print("\nsummary")
    print(f"{'measurement':90s} {'ratio':>8s}  target   met")
    for what, _, _, ratio, target, met in ROWS:
        print(f"{what:90s} {ratio:>8s}  {target:7s}  {'-' if met is None else ('yes' if met else 'NO')}")


if __name__ == "__main__":
    main()
