"""Small models for the match tests, importable as ``match_models:<callable>`` (tests/match on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.submodule = nn.Linear(c, c)  # a name that contains "module." in its keys

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Net(nn.Module):
    def __init__(self, in_chans: int = 3, classes: int = 3, extra: bool = False, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_chans, width, 3)
        self.layer1 = Block(width)
        self.layer2 = Block(width)
        self.extra = nn.Linear(width, width) if extra else None
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x))).mean((2, 3))
        if self.extra is not None:
            x = self.extra(x)
        return self.fc(x)


class Lit(nn.Module):
    """What a LightningModule holding ``self.model`` saves under ``state_dict``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Net()


class Renamed(nn.Module):
    """The same layers under another attribute name (``backbone`` instead of the top level)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Net()


def build() -> Net:
    torch.manual_seed(0)
    return Net()


def build_extra() -> Net:
    return Net(extra=True)


def build_head() -> Net:
    return Net(classes=7)


def build_gray() -> Net:
    return Net(in_chans=1)


def build_renamed() -> Renamed:
    return Renamed()


def broken() -> Net:
    raise RuntimeError("config file missing")


not_callable = 3


class Vocoder(nn.Module):
    """Old checkpoints of weight-normed layers hold weight_g/weight_v; the parametrization loads them."""

    def __init__(self, new: bool = True) -> None:
        super().__init__()
        wn = nn.utils.parametrizations.weight_norm if new else nn.utils.weight_norm
        self.conv = wn(nn.Conv1d(2, 3, 3))
        self.out = nn.Linear(3, 2)


def build_vocoder() -> Vocoder:
    return Vocoder()
