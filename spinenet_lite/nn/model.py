"""The multi-task VGG-M of the paper (Fig. 2), with a selectable branch point.

Introduced in chapter 03, *The model*.

Layers, for a disc volume ``(N, 9, 112, 224)`` at ``width=1`` (paddings chosen so every
size divides cleanly; output shapes are per copy, ``(C, H, W)``):

=======  ==========================================  ===============
layer    operation                                   output
=======  ==========================================  ===============
conv1    96 filters 7×7 (over the 9 slices), /2, pad 3, ReLU   (96, 56, 112)
pool1    2×2 max pooling, /2                         (96, 28, 56)
conv2    256 filters 5×5, /2, pad 2, ReLU            (256, 14, 28)
pool2    2×2 max pooling, /2                         (256, 7, 14)
conv3    512 filters 3×3, pad 1, ReLU                (512, 7, 14)
conv4    512 filters 3×3, pad 1, ReLU                (512, 7, 14)
conv5    512 filters 3×3, pad 1, ReLU                (512, 7, 14)
pool5    2×2 max pooling, /2 (floor)                 (512, 3, 7)
fc6      4096, ReLU, dropout                         (4096,)
fc7      1024, ReLU, dropout                         (1024,)
fc8      one per task, ``N_CLASSES[task]`` outputs   (C_t,)
=======  ==========================================  ===============

Departures from the original VGG-M (as in the paper): 2×2 max pooling instead of 3×3
stride 2, no local response normalisation, 9 input channels instead of 3.

Batched branches
----------------
Every layer after ``branch_point`` exists once per task (``T`` copies). The copies are
*not* a Python loop over ``T`` networks: a per-task convolution is one grouped convolution
with ``groups=T`` over the ``T`` stacked feature maps (channels ``[t*C, (t+1)*C)`` belong to
task ``t``); the first per-task convolution, whose input is still shared, is a plain
convolution with ``T*C`` output channels; per-task fully connected layers are one batched
matrix product (:class:`TaskLinear`). ``branch_point="none"`` is therefore six independent
networks computed together: no parameter of task ``a`` ever sees task ``b``'s data or loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ..tasks import BRANCH_POINTS, TASKS, Task

N_SLICES = 9
INPUT_SIZE: tuple[int, int] = (112, 224)
"""Rows and columns of one disc slice, the network's input size."""

LAYERS: tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
"""The learnt layers, in order; ``branch_point`` names the last shared one (or ``"none"``)."""

# (out channels, kernel, stride, padding) of the paper-size convolutions.
_CONV_SPECS: dict[str, tuple[int, int, int, int]] = {
    "conv1": (96, 7, 2, 3),
    "conv2": (256, 5, 2, 2),
    "conv3": (512, 3, 1, 1),
    "conv4": (512, 3, 1, 1),
    "conv5": (512, 3, 1, 1),
}
_FC_SIZES: dict[str, int] = {"fc6": 4096, "fc7": 1024}
_POOL_AFTER: tuple[str, ...] = ("conv1", "conv2", "conv5")


def scaled(n: int, width: float) -> int:
    """``max(1, round(n * width))``: a channel or fc size at ``width``."""
    return max(1, int(round(n * width)))


def shared_layers(branch_point: str) -> tuple[str, ...]:
    """The layers shared by all tasks for ``branch_point`` (the rest are per task).

    >>> shared_layers("conv5")
    ('conv1', 'conv2', 'conv3', 'conv4', 'conv5')
    """
    if branch_point not in BRANCH_POINTS:
        raise ConfigError(
            f"unknown branch point {branch_point!r}; choose one of {', '.join(BRANCH_POINTS)}"
        )
    if branch_point == "none":
        return ()
    return LAYERS[: LAYERS.index(branch_point) + 1]


def _glorot_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Glorot (Xavier) uniform init in place with the fans of one copy of the layer."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-bound, bound)


class TaskLinear(nn.Module):
    """``copies`` independent fully connected layers computed as one batched product.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of one copy.
    copies : int
        Number of independent copies (one per task).

    Shapes
    ------
    Input ``(N, F)`` (shared: every copy sees the same vector; computed as one matmul with
    ``copies * out_features`` outputs) or ``(N, copies, F)`` (one vector per copy, computed
    with ``torch.baddbmm``). Output ``(N, copies, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, copies: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.copies = in_features, out_features, copies
        self.weight = nn.Parameter(torch.empty(copies, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(copies, out_features))
        _glorot_(self.weight, in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, o, f = self.weight.shape
        if x.dim() == 2:
            y = F.linear(x, self.weight.reshape(t * o, f), self.bias.reshape(t * o))
            return y.view(x.shape[0], t, o)
        # (T, N, F) @ (T, F, O) + (T, 1, O) -> (T, N, O); autocast covers baddbmm.
        y = torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1), self.weight.transpose(1, 2))
        return y.transpose(0, 1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, copies={self.copies}"


class SpineNet(nn.Module):
    """Multi-task VGG-M: shared layers up to ``branch_point``, then one branch per task.

    Parameters
    ----------
    branch_point : str
        One of ``tasks.BRANCH_POINTS``: the last shared layer; ``"none"`` gives one
        independent network per task (computed batched). Paper's best: ``"conv5"``.
    width : float
        Multiplier of every convolution's channel count and of fc6 / fc7 (each size is
        ``max(1, round(size * width))``); 1.0 is the paper's network.
    dropout : float
        Dropout probability after fc6 and fc7 (VGG-M: 0.5).
    tasks : sequence of Task
        The tasks, default :data:`spinenet_lite.tasks.TASKS`; one fc8 of ``n_classes``
        outputs each.
    input_size : (int, int)
        Rows and columns of the input slices (default ``(112, 224)``).

    Notes
    -----
    Input: ``(N, 9, H, W)`` float in [0, 1]. The buffer ``input_mean`` ``(9,)`` (zeros until
    :meth:`set_input_mean`) is subtracted per slice channel first; it is part of the
    ``state_dict``. Weights are Glorot-uniform (fans of one copy), biases zero.
    """

    def __init__(
        self,
        branch_point: str = "conv5",
        width: float = 1.0,
        dropout: float = 0.5,
        tasks: Sequence[Task] = TASKS,
        input_size: tuple[int, int] = INPUT_SIZE,
    ) -> None:
        super().__init__()
        if not (isinstance(width, (int, float)) and width > 0 and math.isfinite(width)):
            raise ConfigError(f"width={width!r} is invalid: give a positive number such as 0.25 or 1.0")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout={dropout!r} is invalid: give a probability in [0, 1)")
        tasks = tuple(tasks)
        if not tasks:
            raise ConfigError("tasks is empty: give at least one task (default: spinenet_lite.tasks.TASKS)")
        self.branch_point = branch_point
        self.shared = shared_layers(branch_point)
        self.width = float(width)
        self.dropout = float(dropout)
        self.tasks = tasks
        self.task_names = tuple(t.name for t in tasks)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        T = len(tasks)
        self.n_tasks = T

        self.register_buffer("input_mean", torch.zeros(N_SLICES))

        # Convolutions.
        c_in, h, w = N_SLICES, *self.input_size
        prev_per_task = False
        self.conv_channels: dict[str, int] = {}
        for name, (c, k, s, p) in _CONV_SPECS.items():
            c_out = scaled(c, width)
            per_task = name not in self.shared
            if per_task:
                groups = T if prev_per_task else 1
                conv = nn.Conv2d(c_in * (T if prev_per_task else 1), c_out * T, k, s, p, groups=groups)
            else:
                conv = nn.Conv2d(c_in, c_out, k, s, p)
            _glorot_(conv.weight, c_in * k * k, c_out * k * k)
            nn.init.zeros_(conv.bias)
            setattr(self, name, conv)
            self.conv_channels[name] = c_out
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if name in _POOL_AFTER:
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ConfigError(f"input_size={input_size} is too small for the network (after {name})")
            c_in, prev_per_task = c_out, per_task
        self.conv5_per_task = prev_per_task

        # Fully connected layers.
        f_in = c_in * h * w
        self.fc_sizes: dict[str, int] = {}
        for name, size in _FC_SIZES.items():
            f_out = scaled(size, width)
            if name in self.shared:
                fc = nn.Linear(f_in, f_out)
                _glorot_(fc.weight, f_in, f_out)
                nn.init.zeros_(fc.bias)
            else:
                fc = TaskLinear(f_in, f_out, T)
            setattr(self, name, fc)
            self.fc_sizes[name] = f_out
            f_in = f_out
        self.fc8 = nn.ModuleDict()
        for t in tasks:
            lin = nn.Linear(f_in, t.n_classes)
            _glorot_(lin.weight, f_in, t.n_classes)
            nn.init.zeros_(lin.bias)
            self.fc8[t.name] = lin

        # Grad-CAM taps on the last conv feature map (post-ReLU, before pool5).
        self.taps = nn.ModuleDict({name: nn.Identity() for name in self.task_names}) \
            if self.conv5_per_task else nn.ModuleDict({"shared": nn.Identity()})

    # ------------------------------------------------------------------ public helpers
    def set_input_mean(self, mean: Any) -> None:
        """Set the per-slice-channel mean subtracted from every input.

        Parameters
        ----------
        mean : array-like, shape (9,)
            Mean intensity of each of the 9 slice channels over the training volumes
            (values in [0, 1]).
        """
        m = torch.as_tensor(mean, dtype=torch.float32).detach().flatten()
        if m.numel() != N_SLICES or not torch.isfinite(m).all():
            raise InputError(
                f"input mean must be {N_SLICES} finite numbers (one per slice channel), got shape "
                f"{tuple(torch.as_tensor(mean).shape)}; compute it as volumes.mean(axis=(0, 2, 3))"
            )
        with torch.no_grad():
            self.input_mean.copy_(m.to(self.input_mean.device))

    def is_per_task(self, layer: str) -> bool:
        """True if ``layer`` (one of :data:`LAYERS`) has one copy per task."""
        return layer not in self.shared

    def feature_tap(self, task: str) -> nn.Module:
        """Module whose forward output is ``task``'s last conv feature map.

        Returns
        -------
        torch.nn.Module
            An ``nn.Identity`` whose output is the post-ReLU conv5 map ``(N, C5, h, w)``
            (``h, w = 7, 14`` for 112×224 input) that ``task``'s logits depend on: one tap
            per task when conv5 is per task, one shared tap otherwise. Hook it with
            captum's ``LayerGradCam(forward_func, layer=model.feature_tap(task))``.
        """
        if task not in self.task_names:
            raise InputError(f"unknown task {task!r}; the model's tasks are {', '.join(self.task_names)}")
        return self.taps[task] if self.conv5_per_task else self.taps["shared"]

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"the model takes a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != N_SLICES or tuple(x.shape[2:]) != self.input_size:
            raise InputError(
                f"input must have shape (N, {N_SLICES}, {self.input_size[0]}, {self.input_size[1]}) "
                f"(disc volumes), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise InputError(f"input must be floating point in [0, 1], got dtype {x.dtype}")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores of every task.

        Parameters
        ----------
        x : Tensor, shape (N, 9, 112, 224), float
            Disc volumes with intensities in [0, 1].

        Returns
        -------
        dict of str to Tensor
            ``{task: logits (N, C_t)}`` unnormalised scores, keyed by task name.
        """
        self._check_input(x)
        T = self.n_tasks
        x = x - self.input_mean.view(1, -1, 1, 1).to(x.dtype)
        for name in _CONV_SPECS:
            x = F.relu(getattr(self, name)(x))
            if name == "conv5":
                x = self._tap(x)
            if name in _POOL_AFTER:
                x = F.max_pool2d(x, 2)
        n = x.shape[0]
        x = x.reshape(n, T, -1) if self.conv5_per_task else x.reshape(n, -1)
        for name in _FC_SIZES:
            x = F.dropout(F.relu(getattr(self, name)(x)), self.dropout, self.training)
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self.task_names):
            out[name] = self.fc8[name](x[:, i] if x.dim() == 3 else x)
        return out

    def _tap(self, x: torch.Tensor) -> torch.Tensor:
        if not self.conv5_per_task:
            return self.taps["shared"](x)
        parts = x.chunk(self.n_tasks, dim=1)
        return torch.cat([self.taps[name](p) for name, p in zip(self.task_names, parts)], dim=1)


# ---------------------------------------------------------------------- inspection
def _trace(model: SpineNet, input_shape: Sequence[int]) -> list[dict[str, Any]]:
    """Run one forward pass recording each layer's output shape and multiply-adds."""
    rows: list[dict[str, Any]] = []
    T = model.n_tasks
    hooks = []

    def conv_hook(name: str):
        def hook(mod: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            copies = T if model.is_per_task(name) else 1
            c, h, w = out.shape[1:]
            k = mod.kernel_size[0] * mod.kernel_size[1]
            macs = c * h * w * (mod.in_channels // mod.groups) * k
            rows.append({"layer": name, "copies": copies, "output": (c // copies, h, w),
                         "params": sum(p.numel() for p in mod.parameters()), "macs": macs})
            if name in _POOL_AFTER:
                rows.append({"layer": f"pool{name[-1]}", "copies": copies,
                             "output": (c // copies, h // 2, w // 2), "params": 0, "macs": 0})
        return hook

    def fc_hook(name: str):
        def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            copies = T if model.is_per_task(name) else 1
            f_out = out.shape[-1]
            f_in = mod.in_features
            rows.append({"layer": name, "copies": copies, "output": (f_out,),
                         "params": sum(p.numel() for p in mod.parameters()),
                         "macs": copies * f_in * f_out})
        return hook

    for name in _CONV_SPECS:
        hooks.append(getattr(model, name).register_forward_hook(conv_hook(name)))
    for name in _FC_SIZES:
        hooks.append(getattr(model, name).register_forward_hook(fc_hook(name)))
    try:
        was_training = model.training
        model.eval()
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), device=p.device, dtype=p.dtype))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    f_in = model.fc8[model.task_names[0]].in_features
    rows.append({"layer": "fc8", "copies": T,
                 "output": "(" + ", ".join(str(t.n_classes) for t in model.tasks) + ")",
                 "params": sum(p.numel() for p in model.fc8.parameters()),
                 "macs": sum(f_in * t.n_classes for t in model.tasks)})
    return rows


def layer_table(
    model: SpineNet, input_shape: Sequence[int] = (1, N_SLICES, *INPUT_SIZE)
) -> list[dict[str, Any]]:
    """One row per layer: name, copies, output shape (per copy) and parameters.

    Parameters
    ----------
    model : SpineNet
    input_shape : (N, 9, H, W)
        Shape of the dummy input pushed through the model (default one 112×224 volume).

    Returns
    -------
    list of dict
        Keys ``layer`` (str), ``copies`` (1 shared, T per task), ``output`` (tuple, shape of
        one copy's output without the batch axis; for fc8 the class counts per task),
        ``params`` (int, all copies together) and ``macs`` (multiply-adds per sample, all
        copies).
    """
    return _trace(model, input_shape)


def count_params(model: nn.Module) -> int:
    """Number of learnt parameters."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: SpineNet) -> int:
    """Multiply-adds of one forward pass, per sample (convolutions and fc layers).

    A training step costs about three times this (forward, and two products backward).
    """
    return int(sum(r["macs"] for r in _trace(model, (1, N_SLICES, *model.input_size))))
