"""Small nn.Modules pickled whole by the tests (importable as fix.fixmodels when torch loads them)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.register_buffer("steps", torch.tensor(3))
        self.act = nn.ReLU()
        self.missing = None  # a None submodule: skipped by state_dict()


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = Block()
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4, bias=False)])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        self.tied = nn.Linear(4, 4)
        self.tied.weight = self.layers[0].weight  # shared parameter: two keys, one storage
        self.norm = nn.LayerNorm(4)
        self.emb = nn.Embedding(5, 4).to(torch.bfloat16)


def make_model(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    m = TinyNet()
    with torch.no_grad():
        m.stem.bn.running_mean.uniform_()
        m.stem.bn.running_var.uniform_(0.5, 1.5)
        m.stem.bn.num_batches_tracked.fill_(7)
    return m


class Thing:
    """A plain user class stored in a checkpoint (weights_only refuses it)."""

    def __init__(self) -> None:
        self.name = "thing"
        self.values = [1, 2]


def small_bn_state_dict() -> dict:
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    return m, m.state_dict()


class TaggedTensor(torch.Tensor):
    """A tensor subclass (weights_only refuses the class)."""
