"""The networks of localisation, detection and segmentation: the grammar's backbone and the task's heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HEATMAP_PRIOR = 0.1  # the heatmap starts near this everywhere (focal loss's prior, as CenterNet does)


class TaskNet(nn.Module):
    """`backbone` (the grammar's layers) gives a channels×fsize×fsize feature map; the heads read it.

    localisation  {"logits": N×classes (1×1 conv, global average pooling),
                   "box": N×4: cx, cy, w, h in [0, 1], see soft_box}
    detection     {"heatmap": N×classes×F×F logits, "size": N×2×F×F (w, h in cells),
                   "offset": N×2×F×F (the centre's place inside its cell)}: CenterNet's heads
    segmentation  {"logits": N×classes×S×S}: a 1×1 classifier, upsampled bilinearly to the input
    """

    def __init__(self, task: str, layers: list, channels: int, fsize: int, size: int, classes: int):
        super().__init__()
        self.task, self.fsize, self.size, self.classes = task, fsize, size, classes
        self.backbone = nn.Sequential(*layers)
        if task == "localisation":
            self.cls = nn.Conv2d(channels, classes, 1)
            self.box = nn.Conv2d(channels, 5, 1)
            cells = (torch.arange(fsize, dtype=torch.float32) + 0.5) / fsize
            self.register_buffer("cells", cells, persistent=False)
        elif task == "detection":
            self.heatmap = nn.Conv2d(channels, classes, 1)
            self.box_size = nn.Conv2d(channels, 2, 1)
            self.offset = nn.Conv2d(channels, 2, 1)
            nn.init.constant_(self.heatmap.bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))
        elif task == "segmentation":
            self.classifier = nn.Conv2d(channels, classes, 1)
        else:
            raise ValueError(f"unknown task {task!r}")

    def forward(self, x):
        f = self.backbone(x)
        if self.task == "localisation":
            return {"logits": self.cls(f).mean((2, 3)), "box": self.soft_box(self.box(f))}
        if self.task == "detection":
            return {"heatmap": self.heatmap(f), "size": self.box_size(f), "offset": self.offset(f)}
        return {"logits": F.interpolate(self.classifier(f), size=(self.size, self.size), mode="bilinear",
                                        align_corners=False)}

    def soft_box(self, raw):
        """One box from a 1×1 convolution's 5 numbers a cell: where the object is (a softmax over the
        cells, the attention) and each cell's box (its centre within ±1 cell of the cell's own centre,
        width and height as fractions of the image, through sigmoids); the box is their average
        under the attention, so it is differentiable, always inside [0, 1], and the place of the
        object comes from the map rather than from a flattened vector (soft-argmax)."""
        n, _, h, w = raw.shape
        attention = torch.softmax(raw[:, 0].reshape(n, -1), dim=1).reshape(n, h, w)
        shift = (2 * torch.sigmoid(raw[:, 1:3]) - 1) / self.fsize
        cx = self.cells.view(1, 1, w) + shift[:, 0]
        cy = self.cells.view(1, h, 1) + shift[:, 1]
        size = torch.sigmoid(raw[:, 3:5])
        per_cell = torch.stack([cx, cy, size[:, 0], size[:, 1]], dim=1)  # N×4×h×w
        return (per_cell * attention.unsqueeze(1)).sum((2, 3)).clamp(0, 1)

    def heads(self) -> list[nn.Module]:
        return [m for name, m in self.named_children() if name != "backbone"]

    def check(self, rows, head_rows, in_channels: int = 3) -> None:
        """The table's sizes against a real forward pass, layer by layer."""
        x = torch.zeros(1, in_channels, self.size, self.size)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            for r, module in zip(rows, self.backbone):
                x = module(x)
                if tuple(x.shape[1:]) != (r.channels, r.size, r.size):
                    raise AssertionError(f"{r.layer.name}: table says {r.channels}×{r.size}×{r.size}, "
                                         f"torch gives {tuple(x.shape[1:])}")
            out = self.forward(torch.zeros(1, in_channels, self.size, self.size))
        shapes = {k: tuple(v.shape[1:]) for k, v in out.items()}
        expected = {"localisation": {"logits": (self.classes,), "box": (4,)},
                    "detection": {"heatmap": (self.classes, self.fsize, self.fsize),
                                  "size": (2, self.fsize, self.fsize), "offset": (2, self.fsize, self.fsize)},
                    "segmentation": {"logits": (self.classes, self.size, self.size)}}[self.task]
        if shapes != expected:
            raise AssertionError(f"heads: expected {expected}, torch gives {shapes}")
        self.train(was_training)
