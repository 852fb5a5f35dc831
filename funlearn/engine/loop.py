"""The loop every training-based method (and plain training) runs on: :func:`run`.

One step is ``method.step(params, buffers, state, batch, key)`` with ``key =
funlearn.random.key(seed, step)``: randomness is a pure function of the run seed and the 0-based
step index, and the data order of a :class:`~funlearn.data.TensorLoader` or of
:func:`~funlearn.data.merged_batches` is a pure function of its seed, the epoch and the batch. So
the seed and the counters (step, epoch, batch in the epoch) are the whole random state of a run:
a resumed run calls ``batches.iter_from(epoch, batch)`` (or ``set_epoch(epoch)`` and skips the
consumed batches) and continues bit-identically on CPU. Loaders without ``iter_from``/``set_epoch``
(a ``DataLoader`` with ``shuffle=True`` draws its order from the global RNG) resume at the right
position but not necessarily with the same batches; a plain list of batches resumes exactly.

After each step the engine checks the loss and the params and buffers for NaN/inf (one fused
norm, read together with the metrics in a single host sync) and applies ``on_nonfinite``:
``"stop"`` keeps the last good params and ends the run, ``"skip"`` discards the step and goes on,
``"raise"`` raises :class:`NonFiniteError`. Methods are pure (they never write into their inputs),
so the previous params stay valid without a copy.

Order of events at a step: step -> record -> evaluation (if due) -> best -> checkpoint (if due). At
the end of an epoch: evaluation (``eval_every="epoch"``) -> ``epoch_XXXX`` file -> ``last``. A final
evaluation runs at the end unless the last step was just evaluated.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from funlearn.engine.best import BestCriterion, CriterionSpec
from funlearn.engine.checkpoint import Counters, RunDir, load_checkpoint, save_checkpoint
from funlearn.engine.compile import compile_step, should_compile
from funlearn.engine.evaluate import Evaluator, MetricFn
from funlearn.engine.plot import plot_history, require_matplotlib
from funlearn.engine.progress import Progress
from funlearn.engine.records import History, Record, load_history
from funlearn.engine.tensorboard import TensorBoardLogger, require_tensorboard
from funlearn.methods.base import Method
from funlearn.model import Buffers, FunctionalModel, Params
from funlearn import tree
from funlearn.random import key

__all__ = ["NonFiniteError", "RunResult", "run"]

OnNonfinite = Literal["stop", "skip", "raise"]
Every = Literal["epoch"] | int


class NonFiniteError(FloatingPointError):
    """Raised with ``on_nonfinite="raise"`` when a step produces a NaN/inf loss, params or buffers."""


@dataclass
class RunResult:
    """What :func:`run` returns.

    ``params``/``buffers``/``state``: after the last applied step (the last good one if the run
    stopped on a non-finite step). ``best_*``: the best evaluation's params, buffers and record
    (``None`` without a criterion or when every record had NaN). ``completed``: the requested
    epochs/steps were all taken. ``counters``: step, epoch, batch, samples, elapsed seconds.
    """

    params: Params
    buffers: Buffers
    state: Any
    history: History
    stop_reason: str
    completed: bool
    counters: Counters
    best_params: Params | None = None
    best_buffers: Buffers | None = None
    best_record: Record | None = None
    run_dir: Path | None = None

    def __repr__(self) -> str:
        return (f"RunResult(steps={self.counters.step}, epochs={self.counters.epoch}, "
                f"stop_reason={self.stop_reason!r}, best_record={self.best_record!r})")


def _positive_int(value: Any, name: str, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''} (got {value!r})")
    return int(value)


def _every(value: Any, name: str) -> Every:
    return "epoch" if value == "epoch" else _positive_int(value, f"{name} ('epoch' or a number of steps)", False)


def _epoch_batches(batches: Iterable, epoch: int, start: int) -> Iterator:
    """Batches of ``epoch`` from batch ``start`` on (see the module docstring for the loader kinds)."""
    if hasattr(batches, "iter_from"):
        return iter(batches.iter_from(epoch, start))
    for owner in (batches, getattr(batches, "batch_sampler", None), getattr(batches, "sampler", None)):
        if hasattr(owner, "set_epoch"):
            owner.set_epoch(epoch)
            break
    return itertools.islice(iter(batches), start, None)


def _to_device(batch: Any, device: torch.device) -> Any:
    """The batch's tensors on ``device`` (already there: returned as they are)."""
    if isinstance(batch, Tensor):
        return batch if batch.device == device else batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _num_samples(batch: Any) -> int:
    if isinstance(batch, Mapping):
        return sum(_num_samples(v) for v in batch.values())
    if isinstance(batch, (tuple, list)) and batch:
        return _num_samples(batch[0])
    return int(batch.shape[0]) if isinstance(batch, Tensor) and batch.ndim else 0


def _read_step(metrics: Mapping[str, Any], params: Params, buffers: Buffers, device: torch.device):
    """``({name: float}, params_and_buffers_finite)`` with one host sync for all of it."""
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    values = []
    for name, value in metrics.items():
        t = torch.as_tensor(value, device=device).detach()
        if t.numel() != 1:
            raise ValueError(f"metric {name!r} has shape {tuple(t.shape)}; a method's metrics must be scalars")
        values.append(t.reshape(()).to(dtype))
    values.append(tree.all_finite({**params, **buffers}).to(device=device, dtype=dtype))
    host = torch.stack(values).tolist()
    return dict(zip(metrics, host)), bool(host[-1])


def _nonfinite(loss: float | None, params_finite: bool) -> str | None:
    """What is non-finite after a step (``None`` when the step is good)."""
    bad = [name for name, ok in (("loss", loss is None or math.isfinite(loss)), ("params/buffers", params_finite))
           if not ok]  # fmt: skip
    return " and ".join(bad) or None


def _epoch_complete(counters: Counters, n_batches: int | None, steps: int | None, taken: int) -> bool:
    """Whether the epoch's batches are all consumed, after its iterator stopped (ended, or cut at ``steps``)."""
    if steps is not None and counters.step >= steps:  # cut by the budget: complete only if it was the last batch
        return n_batches is not None and counters.batch == n_batches
    if n_batches is not None and counters.batch != n_batches:
        raise RuntimeError(
            f"batches yielded {counters.batch} batches in epoch {counters.epoch + 1} but its len() is {n_batches}; "
            "len() must be the number of batches per epoch"
        )
    if taken == 0 and counters.batch == 0:
        raise ValueError(f"batches yielded no batch in epoch {counters.epoch + 1}")
    return True


def _load_run(rundir: RunDir, params: Params, buffers: Buffers, state: Any, seed: int, n_batches: int | None,
              with_best: bool) -> tuple[Params, Buffers, Any, Counters, History, Params | None, Buffers | None]:
    """The state of the run in ``rundir`` (its last checkpoint, its history up to it, its best)."""
    ckpt = load_checkpoint(rundir.last, params, buffers, state)
    if ckpt.seed != seed:
        raise ValueError(f"seed={seed} differs from the checkpoint's seed {ckpt.seed}; resume with seed={ckpt.seed}")
    stored = ckpt.metadata.get("batches_per_epoch")
    if stored != n_batches:
        raise ValueError(f"batches has {n_batches} batches per epoch but the run in {rundir.path} had {stored}")
    history = load_history(rundir.path) if (rundir.path / "history.json").is_file() else History()
    history.truncate(ckpt.counters.step)  # the history may be ahead of last, never behind
    history.best, best_params, best_buffers = None, None, None
    if with_best and rundir.best.is_file():
        # best may be ahead of last too (written at an evaluation after the last save); that is
        # harmless: the replay reproduces the same records, none of which beats it before its step
        best = load_checkpoint(rundir.best, params, buffers)
        best_params, best_buffers, history.best = best.params, best.buffers, best.metadata.get("record")
    return ckpt.params, ckpt.buffers, ckpt.state, ckpt.counters, history, best_params, best_buffers


def run(
    method: Method,
    params: Params,
    buffers: Buffers,
    batches: Iterable,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    model: FunctionalModel | None = None,
    eval_loaders: Mapping[str, Iterable] | None = None,
    metrics: MetricFn | Sequence[MetricFn] = (),
    eval_every: Every = "epoch",
    eval_subset: int | None = None,
    eval_at_start: bool = False,
    best: CriterionSpec | None = None,
    run_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    overwrite: bool = False,
    save_every: Every = "epoch",
    save_epochs: bool = False,
    on_nonfinite: OnNonfinite = "stop",
    progress: bool = True,
    desc: str | None = None,
    tensorboard: bool | str | os.PathLike = False,
    plot: bool | str | os.PathLike = False,
    compile: bool | str = "auto",
    on_evaluation: Callable[[Record], None] | None = None,
) -> RunResult:
    """Run ``method`` over ``batches`` for ``epochs`` epochs and/or ``steps`` steps (whichever ends first).

    Args:
        method: a :class:`~funlearn.methods.Method` (``init`` and a pure ``step``).
        params, buffers: the initial model (e.g. from :func:`funlearn.functional`); never modified.
        batches: re-iterable batches (``{"forget": (x, y), "retain": (x, y)}`` or ``(x, y)``): a
            TensorLoader, :func:`~funlearn.data.merged_batches`, a DataLoader or a list. Tensors
            are moved to the params' device.
        seed: the run seed; step ``i`` gets ``funlearn.random.key(seed, i)``.
        model, eval_loaders: evaluate ``acc/<name>`` (%, eval mode) on each named loader;
            ``metrics``: callables ``(params, buffers) -> {name: float}`` added to each evaluation.
        eval_every: ``"epoch"`` or every k steps; ``eval_subset``: evaluate on n samples per loader
            drawn once with the seed; ``eval_at_start``: also evaluate before the first step.
        best: a criterion (see :class:`~funlearn.engine.BestCriterion`), e.g.
            ``{"acc/retain": "max", "acc/forget": "min"}``. Needs an evaluation.
        run_dir: write ``last``/``best``/``epoch_XXXX`` checkpoints and the history there; an
            existing non-empty directory needs ``overwrite=True`` or ``resume``.
        resume: ``True`` continues the run in ``run_dir`` if it has ``last.safetensors`` (and starts
            it otherwise); a path continues the run there (which must exist).
        save_every: write ``last`` every epoch or every k steps (and at the start and the end);
            ``save_epochs``: also keep ``epoch_0001.safetensors``, ... .
        on_nonfinite: ``"stop"`` (default), ``"skip"`` or ``"raise"`` for a NaN/inf step.
        progress: tqdm bar (``False`` prints nothing); ``desc`` prefixes it.
        tensorboard: ``True`` logs to ``run_dir/tensorboard`` (or give a directory); needs
            ``pip install funlearn[tensorboard]``.
        plot: ``True`` saves ``run_dir/history.png`` at the end (or give a path); needs matplotlib.
        compile: ``"auto"`` (compile the step on CUDA), ``True`` or ``False``.
        on_evaluation: called with each evaluation record, after best selection (e.g. to print a
            row per evaluation).

    Returns:
        :class:`RunResult` with the final and best params, the :class:`History` and the stop reason.
    """
    # ---- validation: everything is checked before any work starts ----
    if not (callable(getattr(method, "init", None)) and callable(getattr(method, "step", None))):
        raise ValueError(f"method must be a funlearn Method with init and step (got {type(method).__name__})")
    if not isinstance(params, Mapping) or not params or not all(isinstance(v, Tensor) for v in params.values()):
        raise ValueError("params must be a non-empty dict of tensors (from funlearn.functional(module))")
    if not isinstance(buffers, Mapping) or not all(isinstance(v, Tensor) for v in buffers.values()):
        raise ValueError("buffers must be a dict of tensors (from funlearn.functional(module); {} if none)")
    if not hasattr(batches, "__iter__") or iter(batches) is batches:
        raise ValueError(
            "batches must be re-iterable (a TensorLoader, merged_batches(...), a DataLoader or a list), "
            f"not a one-shot iterator (got {type(batches).__name__})"
        )
    epochs = _positive_int(epochs, "epochs")
    steps = _positive_int(steps, "steps")
    if epochs is None and steps is None:
        raise ValueError("give epochs= or steps= (or both: the run ends at whichever comes first)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int (got {seed!r})")
    eval_every, save_every = _every(eval_every, "eval_every"), _every(save_every, "save_every")
    if on_nonfinite not in ("stop", "skip", "raise"):
        raise ValueError(f"on_nonfinite must be 'stop', 'skip' or 'raise' (got {on_nonfinite!r})")
    n_batches = len(batches) if hasattr(batches, "__len__") else None
    if n_batches == 0:
        raise ValueError("batches has no batches (len 0); lower the batch size or pass a non-empty loader")
    device = next(iter(params.values())).device
    should_compile(compile, device)
    if resume not in (False, True):
        resume_dir = Path(resume)
        if run_dir is not None and Path(run_dir).resolve() != resume_dir.resolve():
            raise ValueError(f"resume={str(resume)!r} and run_dir={str(run_dir)!r} differ; give one of them")
        run_dir = resume_dir
        if not RunDir(run_dir).can_resume():
            raise FileNotFoundError(f"resume={str(resume)!r}: no last.safetensors there to resume from")
    if resume and overwrite:
        raise ValueError("resume and overwrite=True contradict each other; pass one of them")
    if resume is True and run_dir is None:
        raise ValueError("resume=True needs run_dir= (the directory of the run to continue)")
    if save_epochs and run_dir is None:
        raise ValueError("save_epochs=True needs run_dir= to write the epoch checkpoints into")
    if (tensorboard is True or plot is True) and run_dir is None:
        raise ValueError("tensorboard=True and plot=True write into run_dir=; pass run_dir or a path instead of True")
    if tensorboard:
        require_tensorboard()
    if plot:
        require_matplotlib()
    evaluator = Evaluator(model, eval_loaders, metrics, subset=eval_subset, seed=int(seed))
    criterion = BestCriterion(best) if best is not None else None
    if criterion is not None and not evaluator:
        raise ValueError("best= needs something to evaluate: pass model= and eval_loaders= (or metrics=)")
    if on_evaluation is not None and not callable(on_evaluation):
        raise ValueError(f"on_evaluation must be a callable record -> None (got {on_evaluation!r})")
    if eval_at_start and not evaluator:
        raise ValueError("eval_at_start=True needs eval_loaders= (with model=) or metrics=")

    # ---- state: fresh or resumed ----
    seed = int(seed)
    rundir = RunDir(run_dir) if run_dir is not None else None
    state = method.init(params, buffers)
    counters, history = Counters(), History()
    best_params: Params | None = None
    best_buffers: Buffers | None = None
    resuming = rundir is not None and bool(resume) and rundir.can_resume()
    if resuming:
        params, buffers, state, counters, history, best_params, best_buffers = _load_run(
            rundir, params, buffers, state, seed, n_batches, with_best=criterion is not None
        )
    elif rundir is not None:
        rundir.start_fresh(overwrite)

    tb = TensorBoardLogger(rundir.tensorboard if tensorboard is True else tensorboard) if tensorboard else None
    session_start, base_elapsed = time.perf_counter(), counters.elapsed

    def elapsed() -> float:
        return base_elapsed + time.perf_counter() - session_start

    def save(path: Path, with_history: bool = True) -> None:
        counters.elapsed = elapsed()
        if with_history:  # history first: it may be ahead of last, never behind (resume truncates it)
            history.write(rundir.path)
        meta = {"batches_per_epoch": n_batches, "stop_reason": history.stop_reason}
        save_checkpoint(path, params, buffers, state, seed=seed, counters=counters, metadata=meta)

    def evaluate() -> None:
        nonlocal best_params, best_buffers
        record: Record = {
            "step": counters.step,
            "epoch": counters.epoch + (1 if counters.batch > 0 else 0),
            "time": elapsed(),
        }
        prev = history.evals[-1]["step"] if history.evals else 0
        recent = list(itertools.takewhile(lambda r: r["step"] > prev, reversed(history.steps)))
        losses = [r["loss"] for r in recent if not r["skipped"] and "loss" in r]
        if losses:
            record["loss"] = sum(losses) / len(losses)
        lrs = [r["lr"] for r in recent if "lr" in r]
        if lrs:
            record["lr"] = lrs[0]
        record.update(evaluator(params, buffers))
        history.evals.append(record)
        bar.evaluation(record)
        if tb is not None:
            tb.log("eval", record)
        if criterion is not None and criterion.is_better(record, history.best):
            best_params, best_buffers, history.best = params, buffers, record
            if rundir is not None:
                save_checkpoint(rundir.best, params, buffers, seed=seed, counters=counters, metadata={"record": record})
        if on_evaluation is not None:
            on_evaluation(record)

    def finished() -> bool:
        return (epochs is not None and counters.epoch >= epochs) or (steps is not None and counters.step >= steps)

    total = steps if n_batches is None or epochs is None else epochs * n_batches
    if steps is not None and total is not None:
        total = min(total, steps)
    bar = Progress(progress, total, counters.step, epochs, desc)
    step_fn = compile_step(method.step, compile, device)
    stopped: str | None = None
    try:
        if not resuming:
            if eval_at_start:
                evaluate()
            if rundir is not None:
                save(rundir.last)
        last_time = time.perf_counter()
        while not finished() and stopped is None:
            bar.set_epoch(counters.epoch + 1)
            taken = 0
            batch_iter = _epoch_batches(batches, counters.epoch, counters.batch)
            if steps is not None:
                batch_iter = itertools.islice(batch_iter, steps - counters.step)
            for batch in batch_iter:
                taken += 1
                batch = _to_device(batch, device)
                new = step_fn(params, buffers, state, batch, key(seed, counters.step, device=device))
                values, params_finite = _read_step(new[3], new[0], new[1], device)
                n, loss = _num_samples(batch), values.get("loss")
                problem = _nonfinite(loss, params_finite)
                row = {"step": counters.step + 1, "epoch": counters.epoch + 1, "batch": counters.batch,
                       "time": elapsed(), "samples_per_s": n / max(time.perf_counter() - last_time, 1e-9),
                       "skipped": problem is not None, **values}  # fmt: skip
                history.steps.append(row)
                if tb is not None:
                    tb.log("train", row)
                if problem is None:
                    params, buffers, state = new[0], new[1], new[2]
                else:
                    where = f"non-finite {problem} at step {row['step']} (epoch {row['epoch']}, batch {row['batch']}; loss={loss})"
                    if on_nonfinite == "raise":
                        raise NonFiniteError(f"{where}; on_nonfinite='raise'")
                    if on_nonfinite == "stop":
                        stopped = f"stopped: {where}; kept the parameters of step {counters.step}"
                        break
                counters.step, counters.batch, counters.samples = counters.step + 1, counters.batch + 1, counters.samples + n
                bar.step(loss)
                if isinstance(eval_every, int) and evaluator and counters.step % eval_every == 0:
                    evaluate()
                if isinstance(save_every, int) and rundir is not None and counters.step % save_every == 0:
                    save(rundir.last)
                last_time = time.perf_counter()  # samples/s: the step and its data, not evaluations or saves
            if stopped is not None:
                break
            if _epoch_complete(counters, n_batches, steps, taken):
                counters.epoch, counters.batch = counters.epoch + 1, 0
                if eval_every == "epoch" and evaluator:
                    evaluate()
                if save_epochs:
                    save(rundir.epoch(counters.epoch), with_history=False)
                if save_every == "epoch" and rundir is not None:
                    save(rundir.last)
                last_time = time.perf_counter()
        if evaluator and (not history.evals or history.evals[-1]["step"] != counters.step):
            evaluate()
        completed = stopped is None
        history.stop_reason = stopped or f"completed: {counters.epoch} epochs, {counters.step} steps"
        if rundir is not None:
            save(rundir.last)
        if plot:
            plot_history(history, rundir.path / "history.png" if plot is True else plot)
    finally:
        bar.close()
        if tb is not None:
            tb.close()
    return RunResult(
        params, buffers, state, history, history.stop_reason, completed, counters,
        best_params, best_buffers, history.best, rundir.path if rundir is not None else None,
    )  # fmt: skip
