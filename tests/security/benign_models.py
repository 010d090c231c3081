"""Classes that benign fixtures pickle by reference (whole-model pickles, configs, enums, hooks)."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.act = functools.partial(nn.functional.gelu, approximate="tanh")
        self.register_buffer("steps", torch.zeros(1, dtype=torch.long))

    def forward(self, x):  # pragma: no cover - never run
        return self.fc(self.act(self.bn(self.conv(x))).mean((2, 3)))


class Stage(enum.Enum):
    TRAIN = 1
    EVAL = 2


@dataclass
class TrainConfig:
    lr: float = 0.1
    layers: list[int] = field(default_factory=lambda: [64, 64])
    stage: Stage = Stage.TRAIN


class Point(NamedTuple):
    x: float
    y: float


def log_hook(module, inputs, output):  # pragma: no cover - never run
    return None


class HookedNet(nn.Module):
    """Registers a bound method as a hook: pickled as builtins.getattr(instance, '_hook')."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.fc.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):  # pragma: no cover - never run
        return None
