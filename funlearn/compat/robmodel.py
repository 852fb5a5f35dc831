"""torchunlearn's ``RobModel`` on funlearn's functional model, its weight files, and ``load_model``.

``RobModel(model, n_classes, normalization_used)`` holds ``fl.functional(model, mean, std)``: the
architecture as a pure function plus ``params``/``buffers`` dicts, the only copy of the weights.
Calling it runs ``apply(params, buffers, x, train=self.training)``, which **normalises inside**:
compat data is in pixel space [0, 1] and ``normalization_used`` is applied by the model
(torchunlearn stored it without applying it and normalised in the data transform instead; the
network sees the same inputs either way as long as the same mean/std are given to both).

Weight files. ``save_dict(path)`` writes torchunlearn's layout ``{"rmodel": state_dict}`` with
``torch.save`` (tensors only; loadable by torchunlearn and by ``torch.load(..., weights_only=True)``),
or a safetensors file when ``path`` ends in ``.safetensors``. ``load_dict(path)`` reads both, plus
funlearn checkpoints (``params/...``/``buffers/...``), always without unpickling objects. The
state_dict keys are torchunlearn's: ``model.<name>`` for the network, plus ``n_classes``, ``mean``
and ``std``. torchunlearn *trainer* checkpoints (its ``last.pth``/``best.pth``) pickle a
``RecordManager`` object and are refused; extract their weights once, in an environment you trust:
load the file with ``torch.load`` with ``weights_only`` switched off, and ``torch.save`` its
``"rmodel"`` entry as ``{"rmodel": state_dict}``.
"""

from __future__ import annotations

import copy
import io
import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from funlearn.engine.evaluate import accuracies
from funlearn.io import CheckpointError, atomic_write_bytes, load_tensors, save_tensors
from funlearn.model import Buffers, Params, functional, load_into_module
from funlearn.models.registry import create_model

__all__ = ["RobModel", "load_model", "read_state", "write_state"]

PathLike = str | os.PathLike

_CONVERT_HINT = (
    "torchunlearn trainer checkpoints pickle a RecordManager object, which funlearn never unpickles. "
    "Extract the weights once, in an environment you trust: load the file with torch.load with "
    "weights_only switched off and torch.save its 'rmodel' entry as {'rmodel': state_dict}."
)


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and a JSON header ``{...``."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def read_state(path: PathLike) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """``(state_dict, record_info)`` from a weight file, loaded safely (nothing unpickled).

    Accepts torchunlearn's ``{"rmodel": state_dict[, "record_info": {...}]}`` and a plain
    ``state_dict`` (``torch.load(weights_only=True)``), and safetensors files: a flat state_dict or a
    funlearn checkpoint (``params/<k>``, ``buffers/<k>``, returned as ``model.<k>``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weight file at {path}")
    if _is_safetensors(path):
        tensors, meta = load_tensors(path)
        if any(k.startswith(("params/", "buffers/")) for k in tensors):
            tensors = {"model." + k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(("params/", "buffers/"))}
        return tensors, meta.get("record_info")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"refusing to load {path}: {str(err).splitlines()[0]}. {_CONVERT_HINT}") from err
    record_info = None
    if isinstance(obj, Mapping) and "rmodel" in obj:
        record_info = obj.get("record_info")
        obj = obj["rmodel"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds neither a state_dict nor torchunlearn's {{'rmodel': state_dict}} (found "
            f"{type(obj).__name__}); save the weights as a dict of tensors"
        )
    return dict(obj), None if record_info is None else dict(record_info)


def write_state(path: PathLike, state_dict: Mapping[str, Tensor], record_info: Mapping[str, Any] | None = None) -> None:
    """Write ``{"rmodel": state_dict[, "record_info": ...]}`` atomically (safetensors for ``*.safetensors``).

    The ``torch.save`` file holds tensors, numbers and strings only, so ``torch.load(path,
    weights_only=True)`` (and torchunlearn's ``RobModel.load_dict``) read it.
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        save_tensors(path, tensors, None if record_info is None else {"record_info": dict(record_info)})
        return
    payload: dict[str, Any] = {"rmodel": tensors}
    if record_info is not None:
        payload["record_info"] = dict(record_info)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _normalization(normalization_used: Mapping[str, Sequence[float]] | None) -> tuple[list[float] | None, list[float] | None]:
    """``(mean, std)``, or ``(None, None)`` for none or the identity (mean 0, std 1)."""
    if normalization_used is None:
        return None, None
    if not isinstance(normalization_used, Mapping) or set(normalization_used) != {"mean", "std"}:
        raise ValueError(
            "normalization_used must be a dict {'mean': [...], 'std': [...]} (one value per input channel), "
            f"got {normalization_used!r}"
        )
    mean = [float(v) for v in torch.as_tensor(normalization_used["mean"]).reshape(-1)]
    std = [float(v) for v in torch.as_tensor(normalization_used["std"]).reshape(-1)]
    if all(m == 0.0 for m in mean) and all(s == 1.0 for s in std):
        return None, None
    return mean, std


class _Normalize(nn.Module):
    """``x -> (x - mean) / std`` over the channel dimension (for :meth:`RobModel.to_module`)."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class RobModel:
    """A torchunlearn ``RobModel`` whose weights live in ``params``/``buffers`` of a functional model.

    ``model``: the ``nn.Module`` (its architecture and initial weights; it is not modified).
    ``n_classes``: number of outputs. ``normalization_used``: ``{"mean": [...], "std": [...]}``
    applied inside the model to pixel-space inputs (None or the identity: no normalisation).
    ``rmodel(x)`` returns logits ``(N, n_classes)`` in the mode set by ``train()``/``eval()``
    (train mode updates the BatchNorm statistics in ``buffers``, as a module would). It is not an
    ``nn.Module``: :meth:`to_module` returns one with the current weights.
    """

    def __init__(
        self,
        model: nn.Module,
        n_classes: int,
        normalization_used: Mapping[str, Sequence[float]] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        mean, std = _normalization(normalization_used)
        self.fmodel, self.params, self.buffers = functional(model, mean=mean, std=std)
        self.n_classes = n_classes
        self.training = True
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ module-like behaviour
    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def get_device(self) -> torch.device:
        return self.device

    @property
    def mean(self) -> Tensor:
        return self.fmodel.mean if self.fmodel.mean is not None else torch.zeros(1)

    @property
    def std(self) -> Tensor:
        return self.fmodel.std if self.fmodel.std is not None else torch.ones(1)

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of pixel-space ``x`` (normalised inside); train mode updates ``buffers``."""
        logits, new_buffers = self.fmodel.apply(self.params, self.buffers, x.to(self.device), train=self.training)
        if self.training:
            self.buffers = new_buffers
        return logits

    def train(self, mode: bool = True) -> RobModel:
        self.training = bool(mode)
        return self

    def eval(self) -> RobModel:
        return self.train(False)

    def to(self, device: torch.device | str) -> RobModel:
        self.params = {k: v.to(device) for k, v in self.params.items()}
        self.buffers = {k: v.to(device) for k, v in self.buffers.items()}
        return self

    def parameters(self) -> Iterator[Tensor]:
        return iter(self.params.values())

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        return iter(self.params.items())

    def add_normalize(self) -> None:
        """No-op: the normalisation is always applied inside the model (torchunlearn needed this call
        for pixel-space data; compat data is always pixel space)."""

    def to_module(self) -> nn.Module:
        """A standalone ``nn.Module`` with the current weights: ``Sequential(normalize, model)``."""
        module = load_into_module(copy.deepcopy(self.fmodel.module).to(self.device), self.params, self.buffers)
        return nn.Sequential(_Normalize(self.mean, self.std), module).to(self.device).train(self.training)

    # ------------------------------------------------------------------ weights
    def state_dict(self, params: Params | None = None, buffers: Buffers | None = None) -> OrderedDict[str, Tensor]:
        """torchunlearn's layout: ``model.<name>`` for every param and buffer, ``n_classes``, ``mean``, ``std``.

        ``params``/``buffers``: the state of other weights of this architecture (default: the model's).
        """
        params = self.params if params is None else params
        buffers = self.buffers if buffers is None else buffers
        state: OrderedDict[str, Tensor] = OrderedDict()
        for name, value in [*params.items(), *buffers.items()]:
            state[f"model.{name}"] = value.detach()
        state["n_classes"] = torch.tensor(self.n_classes)
        state["mean"], state["std"] = self.mean.clone(), self.std.clone()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load torchunlearn's layout (``model.`` or DataParallel's ``model.module.`` prefix) or a plain
        module state_dict; every missing, unexpected or mis-shaped entry is named in the error."""
        state = {k.replace("model.module.", "model.", 1) if k.startswith("model.module.") else k: v
                 for k, v in state_dict.items()}  # fmt: skip
        if "n_classes" in state and int(state["n_classes"]) != self.n_classes:
            raise ValueError(f"the weights are for n_classes={int(state['n_classes'])}, this RobModel has {self.n_classes}")
        for name in ("mean", "std"):
            if name in state and not _same_stats(state[name], getattr(self, name)):
                warnings.warn(
                    f"the file's normalisation {name}={state[name].tolist()} differs from this RobModel's "
                    f"{getattr(self, name).tolist()}; keeping the RobModel's (normalization_used)",
                    stacklevel=3,
                )
        if any(k.startswith("model.") for k in state):
            network = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        else:
            network = {k: v for k, v in state.items() if k not in ("n_classes", "mean", "std")}
        own = {**self.params, **self.buffers}
        missing, unexpected = sorted(set(own) - set(network)), sorted(set(network) - set(own))
        wrong = [f"{k}: {tuple(network[k].shape)} != {tuple(own[k].shape)}" for k in own
                 if k in network and network[k].shape != own[k].shape]  # fmt: skip
        if missing or unexpected or wrong:
            raise ValueError(
                f"the weights do not fit this model: missing {missing}, unexpected {unexpected}, wrong shapes {wrong}"
            )
        self.params = {k: network[k].to(device=v.device, dtype=v.dtype).clone() for k, v in self.params.items()}
        self.buffers = {k: network[k].to(device=v.device, dtype=v.dtype).clone() for k, v in self.buffers.items()}

    def load_dict(self, save_path: PathLike) -> None:
        """Load weights from ``save_path`` (see :func:`read_state`); prints its record info if any."""
        state, record_info = read_state(save_path)
        self.load_state_dict(state)
        print("Model loaded.")
        if record_info:
            print("Record Info:")
            print(record_info)

    def save_dict(self, save_path: PathLike) -> None:
        """Write ``{"rmodel": state_dict}`` (``torch.save`` of tensors) or safetensors (``*.safetensors``)."""
        write_state(save_path, self.state_dict())

    # ------------------------------------------------------------------ evaluation
    def eval_accuracy(self, data_loader: Iterable) -> float:
        """Top-1 accuracy in % over every ``(x, y)`` batch of ``data_loader`` (eval mode)."""
        return accuracies(self.fmodel, self.params, self.buffers, {"data": data_loader})["acc/data"]

    def __repr__(self) -> str:
        return (f"RobModel({type(self.fmodel.module).__name__}, n_classes={self.n_classes}, "
                f"mean={self.mean.tolist()}, std={self.std.tolist()}, device={self.device})")  # fmt: skip


def _same_stats(a: Tensor, b: Tensor) -> bool:
    a, b = a.detach().float().reshape(-1).cpu(), b.detach().float().reshape(-1).cpu()
    return a.shape == b.shape and bool(torch.allclose(a, b))


# torchunlearn name -> (funlearn model, default in_channels, default image_size)
_MODELS: dict[str, tuple[str, int, int | None]] = {
    "LeNet": ("lenet", 1, 28),
    "ResNet10": ("resnet10", 1, None),
    "ResNet18": ("resnet18", 3, None),
    "ResNet34": ("resnet34", 3, None),
    "ResNet50": ("resnet50", 3, None),
    "PRN18": ("preact_resnet18", 3, None),
    "WRN28-10": ("wide_resnet28_10", 3, None),
    "VGG11": ("vgg11", 3, None),
    "VGG13": ("vgg13", 3, None),
    "VGG16": ("vgg16", 3, None),
    "VGG19": ("vgg19", 3, None),
}
_UNSUPPORTED = ("LeNetPP", "MNIST_ATES", "MNIST_DAT", "MNIST_Fast", "WRN34-10", "ResNet101", "ResNet152",
                "DenseNet121", "DenseNet169", "DenseNet201", "DenseNet161")  # fmt: skip


def load_model(
    model_name: str, n_classes: int, *, in_channels: int | None = None, image_size: int | None = None, seed: int = 0
) -> nn.Module:
    """torchunlearn's model names, built by :func:`funlearn.create_model` (seeded initialisation).

    ``in_channels`` defaults to torchunlearn's: 1 for ``LeNet`` and ``ResNet10``, 3 otherwise (pass
    ``in_channels=1`` for a ResNet18 on the MNIST family). funlearn names (``"resnet18"``,
    ``"small_cnn"``...) are accepted too. ``ResNet50`` is funlearn's bottleneck ResNet-50
    (torchunlearn's was built from basic blocks).
    """
    if model_name in _MODELS:
        name, channels, size = _MODELS[model_name]
    elif model_name in _UNSUPPORTED:
        raise ValueError(f"model {model_name!r} is not available in funlearn; supported: {', '.join(_MODELS)}")
    else:
        name, channels, size = model_name, 3, None
    try:
        return create_model(name, num_classes=n_classes, in_channels=in_channels or channels,
                            image_size=image_size or size, seed=seed)  # fmt: skip
    except ValueError as err:
        raise ValueError(f"{err}; torchunlearn names: {', '.join(_MODELS)}") from None
