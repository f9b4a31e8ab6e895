"""The sanity trainer's model: a tiny CNN described by a short architecture string.

Grammar, layers joined by `-`:
  c{out}k{K}[s{S}][p{P}|psame]   convolution, out channels, kernel K, stride S (1), padding P (0);
                                 psame (or p=same) is P = (K − 1)/2, for odd K and stride 1
  r                              ReLU
  m{K}[s{S}] / a{K}[s{S}] / l{K}[s{S}]
                                 max / average / L2 pooling (the square root of the sum of
                                 squares in the window), stride S (default K)
  d{p}                           dropout with probability p (active in training only)
  gap  /  gmp                    global average / max pooling
  {classes}                      the number of classes, e.g. c{classes}k1 (the 1×1 classifier)

Each output size is O = (W − K + 2P)/S + 1; an architecture whose size is not a whole number,
or falls below 1, is refused with the arithmetic shown, before any data is read.

For classification the string is the whole network, classifier and global pooling included. For
the other tasks it is the backbone, ending in a feature map, and the task's heads (1×1
convolutions, and for localisation a linear box regressor) are added after it: `task_table`
shows them as the last rows of the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from augpipe.errors import UsageError

DEFAULT_ARCH = "c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-d0.3-c{classes}k1-gap"
_CONV = re.compile(r"c(\d+)k(\d+)(?:s(\d+))?(?:p=?(\d+|same))?")
_POOL = re.compile(r"([mal])(\d+)(?:s(\d+))?")
_DROP = re.compile(r"d(0?\.\d+|[01](?:\.0*)?)")


class ArchError(UsageError):
    """An architecture string that does not parse or whose sizes do not work out."""


@dataclass(frozen=True)
class Layer:
    name: str  # conv1, relu1, maxpool1, dropout1, gap
    kind: str  # conv, relu, maxpool, avgpool, l2pool, dropout, gap, gmp; heads: conv, linear, upsample
    token: str
    out_channels: int = 0
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    p: float = 0.0


@dataclass(frozen=True)
class Row:
    """One line of the layer table."""

    layer: Layer
    channels: int
    size: int
    params: int
    arithmetic: str


def parse_arch(arch: str, classes: int) -> list[Layer]:
    text = arch.replace("{classes}", str(classes)).strip()
    if not text:
        raise ArchError("the architecture is empty")
    layers, counts = [], {}
    for token in text.split("-"):
        layer = _parse_token(token)
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
        name = layer.kind if layer.kind in ("gap", "gmp") else f"{layer.kind}{counts[layer.kind]}"
        layers.append(replace(layer, name=name))
    return layers


def _parse_token(token: str) -> Layer:
    if m := _CONV.fullmatch(token):
        out, k = int(m.group(1)), int(m.group(2))
        stride = int(m.group(3) or 1)
        if m.group(4) == "same":
            if k % 2 == 0 or stride != 1:
                raise ArchError(f"'{token}': p=same needs an odd kernel and stride 1 (P = (K − 1)/2)")
            padding = (k - 1) // 2
        else:
            padding = int(m.group(4) or 0)
        if out < 1 or k < 1 or stride < 1:
            raise ArchError(f"'{token}': channels, kernel and stride must be at least 1")
        return Layer("", "conv", token, out, k, stride, padding)
    if token == "r":
        return Layer("", "relu", token)
    if m := _POOL.fullmatch(token):
        k = int(m.group(2))
        kind = {"m": "maxpool", "a": "avgpool", "l": "l2pool"}[m.group(1)]
        stride = int(m.group(3) or k)
        if k < 1 or stride < 1:
            raise ArchError(f"'{token}': a pooling window and its stride must be at least 1")
        return Layer("", kind, token, 0, k, stride, 0)
    if m := _DROP.fullmatch(token):
        p = float(m.group(1))
        if not 0 <= p < 1:
            raise ArchError(f"'{token}': dropout probability must be in [0, 1)")
        return Layer("", "dropout", token, p=p)
    if token in ("gap", "gmp"):
        return Layer("", token, token)
    raise ArchError(
        f"'{token}' is not a layer: use cNkK[sS][pP|psame], r, mK[sS], aK[sS], lK[sS], dP, gap or gmp"
    )


def _out_size(layer: Layer, size: int) -> tuple[int, str]:
    k, s, p = layer.kernel, layer.stride, layer.padding
    value = (size - k + 2 * p) / s + 1
    text = f"({size} − {k} + 2·{p})/{s} + 1 = {value:g}"
    if value != int(value):
        raise ArchError(f"{layer.name}: {text} is not a whole number: {_suggest(layer, size)}")
    if value < 1:
        raise ArchError(f"{layer.name}: {text} is below 1: the input is too small for this layer ({layer.token})")
    return int(value), text


def _suggest(layer: Layer, size: int) -> str:
    """The nearest changes that make the size whole: padding (conv), kernel ±1, stride 1."""
    k, s, p = layer.kernel, layer.stride, layer.padding
    options = []
    if layer.kind == "conv":
        fits = [q for q in range(0, k + 1) if q != p and (size - k + 2 * q) % s == 0 and size - k + 2 * q >= 0]
        options += [f"padding {min(fits, key=lambda q: abs(q - p))}"] if fits else []
    kernels = [j for j in (k - 1, k + 1) if j >= 1 and (size - j + 2 * p) % s == 0 and size - j + 2 * p >= 0]
    options += [f"kernel {kernels[0]}"] if kernels else []
    options += ["stride 1"] if s != 1 else []
    return "use " + ", or ".join(options) if options else "change the input size"


def layer_table(arch: str, size: int, classes: int, in_channels: int = 3, complete: bool = True) -> list[Row]:
    """Each layer's output size and parameters, from the arithmetic alone (no torch).

    `complete`: the stack must end in one score a class (for training), not just work out."""
    layers = parse_arch(arch, classes)
    rows, channels, global_pooled = [], in_channels, False
    for layer in layers:
        if global_pooled:
            raise ArchError(f"{layer.name}: nothing may follow global pooling")
        params, text = 0, ""
        if layer.kind == "conv":
            size, text = _out_size(layer, size)
            params = layer.out_channels * (channels * layer.kernel ** 2 + 1)
            channels = layer.out_channels
        elif layer.kind in ("maxpool", "avgpool", "l2pool"):
            size, text = _out_size(layer, size)
        elif layer.kind in ("gap", "gmp"):
            size, text, global_pooled = 1, f"global pooling over {size}×{size}", True
        rows.append(Row(layer, channels, size, params, text))
    if not complete:
        return rows
    if channels != classes:
        raise ArchError(f"the last layer gives {channels} channels for {classes} classes: end with c{{classes}}k1-gap")
    if not global_pooled:
        raise ArchError("end with gap (or gmp), so that each class gets one score")
    if not any(r.params for r in rows):  # `gap` alone where the image's 3 channels are 3 classes
        raise ArchError(f"--arch {arch}: no layer has weights to learn; give it a conv layer (c{{classes}}k1, ...)")
    return rows


def memory_bytes(rows: list[Row], size: int, batch: int, in_channels: int = 3) -> int:
    """About the memory of one training step, from the table alone, float32 (4 bytes a number):

        4 · (4 · parameters                       weights, gradients, Adam's two moments
             + batch · (input + Σ outputs          every activation, kept for backward
                        + the largest output))     its gradient, on the way back
        + 8 · batch · Σ max-pooling outputs        their int64 indices
        + 4 · batch · Σ L2-pooling inputs          the squares L2 pooling keeps for backward

    Measured against the peak resident memory of real steps on the CPU, it lands within about
    0.7–1.6× (autograd frees some outputs, and backward briefly holds two gradients)."""
    params = sum(r.params for r in rows)
    outputs = [in_channels * size * size] + [r.channels * r.size * r.size for r in rows]
    indices = sum(r.channels * r.size * r.size for r in rows if r.layer.kind in ("maxpool", "gmp"))
    squares = sum(outputs[i] for i, r in enumerate(rows) if r.layer.kind == "l2pool")  # outputs[i]: its input
    return 4 * (4 * params + batch * (sum(outputs) + max(outputs))) + 8 * batch * indices + 4 * batch * squares


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e6:.1f} MB"


def format_table(rows: list[Row], size: int, in_channels: int = 3, batch: int | None = None) -> list[str]:
    """The table; with `batch`, a last line with the memory a training step takes."""
    lines = [f"{'layer':<10} {'spec':<10} {'output':<14} {'params':>8}  arithmetic",
             f"{'input':<10} {'':<10} {f'{in_channels}×{size}×{size}':<14} {'':>8}"]
    for r in rows:
        shape = f"{r.channels}×{r.size}×{r.size}"
        lines.append(f"{r.layer.name:<10} {r.layer.token:<10} {shape:<14} {r.params:>8,}  {r.arithmetic}")
    lines.append(f"{'total':<10} {'':<10} {'':<14} {sum(r.params for r in rows):>8,}")
    if batch is not None:
        lines.append(f"memory: about {megabytes(memory_bytes(rows, size, batch, in_channels))} "
                     f"for a batch of {batch} (float32, with gradients and Adam's state)")
    return lines


def build_model(arch: str, size: int, classes: int, in_channels: int = 3):
    """The torch module, checked against the table by a real forward pass."""
    from torch import nn

    rows = layer_table(arch, size, classes, in_channels)
    model = nn.Sequential(*layer_modules(rows, in_channels), nn.Flatten())
    check_shapes(model, rows, size, in_channels)
    return model


def layer_modules(rows: list[Row], in_channels: int = 3) -> list:
    """One torch module per row of the table (the grammar's layers)."""
    from torch import nn

    modules, channels = [], in_channels
    for r in rows:
        layer = r.layer
        if layer.kind == "conv":
            modules.append(nn.Conv2d(channels, layer.out_channels, layer.kernel, layer.stride, layer.padding))
            channels = layer.out_channels
        elif layer.kind == "relu":
            modules.append(nn.ReLU())
        elif layer.kind == "maxpool":
            modules.append(nn.MaxPool2d(layer.kernel, layer.stride))
        elif layer.kind == "avgpool":
            modules.append(nn.AvgPool2d(layer.kernel, layer.stride))
        elif layer.kind == "l2pool":
            modules.append(nn.LPPool2d(2, layer.kernel, layer.stride))
        elif layer.kind == "dropout":
            modules.append(nn.Dropout(layer.p))
        elif layer.kind == "gap":
            modules.append(nn.AdaptiveAvgPool2d(1))
        else:
            modules.append(nn.AdaptiveMaxPool2d(1))
    return modules


def check_shapes(model, rows: list[Row], size: int, in_channels: int = 3) -> None:
    import torch

    x = torch.zeros(1, in_channels, size, size)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for r, module in zip(rows, model):
            x = module(x)
            if tuple(x.shape[1:]) != (r.channels, r.size, r.size):
                raise AssertionError(f"{r.layer.name}: table says {r.channels}×{r.size}×{r.size}, "
                                     f"torch gives {tuple(x.shape[1:])}")
    model.train(was_training)


def classifier_index(model) -> int:
    """The final 1×1 convolution: what --freeze features leaves trainable."""
    from torch import nn

    convs = [i for i, m in enumerate(model) if isinstance(m, nn.Conv2d)]
    if not convs or model[convs[-1]].kernel_size != (1, 1):
        raise ArchError("--freeze features needs a final 1×1 convolution (c{classes}k1) as the classifier")
    return convs[-1]


# ---------------------------------------------------------------- the other tasks: a backbone and heads

TASKS = ("classification", "localisation", "detection", "segmentation")
DEFAULT_ARCHS = {
    "classification": DEFAULT_ARCH,
    # backbones: the task's heads follow the last layer (task_table shows them)
    "localisation": "c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-m2-c64k3p1-r",
    "detection": "c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-c64k3p1-r",
    "segmentation": "c16k3p1-r-m2-c32k3p1-r-m2-c64k3p1-r-c64k3p1-r",
}
DEFAULT_SIZES = {"classification": 32, "localisation": 64, "detection": 64, "segmentation": 64}
HEADS = {
    "classification": "",
    "localisation": "class: c{classes}k1-gap; box: c5k1, a soft-argmax to 4 numbers",
    "detection": "heatmap c{classes}k1 (sigmoid), box size c2k1, centre offset c2k1",
    "segmentation": "c{classes}k1 per pixel, bilinear upsampling to the input size",
}


def task_table(task: str, arch: str, size: int, classes: int, in_channels: int = 3,
               complete: bool = True) -> list[Row]:
    """The layer table of a task's network: for classification the grammar's own (ending in
    c{classes}k1-gap, unless not `complete`); for the others the backbone's rows, then the heads'."""
    if task == "classification":
        return layer_table(arch, size, classes, in_channels, complete=complete)
    rows = layer_table(arch, size, classes, in_channels, complete=False)
    pooled = [r for r in rows if r.layer.kind in ("gap", "gmp")]
    if pooled:
        raise ArchError(f"{pooled[0].layer.name}: {task} needs the feature map, not global pooling: end the "
                        f"backbone with a convolution (the heads are added after it: {HEADS[task]})")
    return rows + head_rows(task, rows[-1].channels, rows[-1].size, size, classes)


def head_rows(task: str, channels: int, fsize: int, size: int, classes: int) -> list[Row]:
    c, f = channels, fsize
    on = f"1×1 on {c}×{f}×{f}"

    def conv(name: str, out: int) -> Row:
        return Row(Layer(name, "conv", f"c{out}k1", out, 1), out, f, out * (c + 1), on)

    if task == "localisation":
        return [conv("class", classes),
                Row(Layer("class_gap", "gap", "gap"), classes, 1, 0, f"global pooling over {f}×{f}"),
                conv("box", 5),
                Row(Layer("box_pool", "softargmax", "softargmax"), 4, 1, 0,
                    f"softmax-weighted over {f}×{f}: cx, cy, w, h")]
    if task == "detection":
        return [conv("heatmap", classes), conv("box_size", 2), conv("offset", 2)]
    if task == "segmentation":
        return [conv("classifier", classes),
                Row(Layer("upsample", "upsample", "bilinear"), classes, size, 0, f"bilinear {f}×{f} → {size}×{size}")]
    raise ValueError(f"unknown task {task!r}")


def backbone_length(rows: list[Row]) -> int:
    """How many of a task table's rows are the grammar's (the rest are heads)."""
    heads = {"class", "class_gap", "box", "box_pool", "heatmap", "box_size", "offset", "classifier", "upsample"}
    return next((i for i, r in enumerate(rows) if r.layer.name in heads), len(rows))


def build_task_model(task: str, arch: str, size: int, classes: int, in_channels: int = 3):
    """The torch module of a task: classification's Sequential, or a backbone with heads whose
    forward gives a dict of outputs; checked against the table by a real forward pass."""
    if task == "classification":
        return build_model(arch, size, classes, in_channels)
    from augpipe.training.nets import TaskNet

    rows = task_table(task, arch, size, classes, in_channels)
    n = backbone_length(rows)
    model = TaskNet(task, layer_modules(rows[:n], in_channels), rows[n - 1].channels, rows[n - 1].size, size,
                    classes)
    model.check(rows[:n], rows[n:], in_channels)
    return model
