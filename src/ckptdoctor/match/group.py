"""Summarise a long key list in a few lines, by common dotted prefix.

Numbers are folded (``blocks.0`` .. ``blocks.11`` -> ``blocks.{0..11}``,
``layer1`` .. ``layer4`` -> ``layer{1..4}``), then a trie of the folded keys
is cut so that at most ``budget`` lines remain: the biggest group is split
first while the lines fit; when a group has more branches than fit, its
biggest branches get their own lines and the rest share one
(``{conv1,bn1,fc}.* (8)``). ``encoder.layers.{0..23}.* (192)`` says where
192 keys are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUM = re.compile(r"^(\D*?)(\d+)$")


@dataclass
class Node:
    part: str  # one folded component ('#' for a number, 'layer#' for layer1, layer2 ...)
    keys: list[int] = field(default_factory=list)  # indices of the keys under this node
    children: dict[str, Node] = field(default_factory=dict)
    terminal: list[int] = field(default_factory=list)  # keys ending exactly here


@dataclass(frozen=True)
class Group:
    pattern: str  # "blocks.{0..11}.attn.*"
    count: int
    keys: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.pattern} ({self.count})" if self.count > 1 or self.pattern.endswith("*") else self.pattern


def _fold(part: str) -> str:
    m = _NUM.match(part)
    return f"{m.group(1)}#" if m else part


def _numbers(ns: set[int]) -> str:
    xs = sorted(ns)
    runs: list[tuple[int, int]] = []
    for x in xs:
        if runs and x == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], x)
        else:
            runs.append((x, x))
    pieces = [str(a) if a == b else (f"{a},{b}" if b == a + 1 else f"{a}..{b}") for a, b in runs]
    if len(pieces) > 4:
        return f"{xs[0]},{xs[1]},...,{xs[-1]}"
    return ",".join(pieces)


@dataclass
class _Line:
    nodes: list[Node]
    path: list[str]  # folded components down to (and including) the nodes' own part
    term: bool = False  # only the keys ending exactly at the node
    frozen: bool = False  # no room to split it

    @property
    def keys(self) -> list[int]:
        if self.term:
            return self.nodes[0].terminal
        return [i for n in self.nodes for i in n.keys]

    @property
    def expandable(self) -> bool:
        return not (self.term or self.frozen) and len(self.nodes) == 1 and bool(self.nodes[0].children)


def _render(line: _Line, split: list[list[str]]) -> str:
    idx = line.keys
    parts = []
    for depth, p in enumerate(line.path):
        if depth == len(line.path) - 1 and len(line.nodes) > 1:
            first: dict[str, int] = {}
            for i in idx:
                first.setdefault(split[i][depth], i)
            names = sorted(first, key=first.__getitem__)
            parts.append("{" + ",".join(names[:6]) + (",..." if len(names) > 6 else "") + "}")
            continue
        if "#" in p:
            vals = {split[i][depth] for i in idx}
            if len(vals) == 1:
                parts.append(next(iter(vals)))
            else:
                m = [_NUM.match(v) for v in vals]
                parts.append(p[:-1] + "{" + _numbers({int(x.group(2)) for x in m if x}) + "}")
        else:
            parts.append(p)
    text = ".".join(parts)
    more = not line.term and any(n.children for n in line.nodes)
    if more:
        text = f"{text}.*" if text else "*"
    return text


def _compress(node: Node, path: list[str]) -> _Line:
    while len(node.children) == 1 and not node.terminal:
        (child,) = node.children.values()
        node, path = child, [*path, child.part]
    return _Line([node], path)


def summarize(keys: list[str], budget: int = 6) -> list[Group]:
    """At most ``budget`` groups covering every key (each key in exactly one group), in key order."""
    if not keys:
        return []
    budget = max(1, budget)
    if len(keys) <= budget:
        return [Group(k, 1, (k,)) for k in keys]
    split = [k.split(".") for k in keys]
    root = Node("")
    for i, parts in enumerate(split):
        node = root
        node.keys.append(i)
        for p in parts:
            f = _fold(p)
            node = node.children.setdefault(f, Node(f))
            node.keys.append(i)
        node.terminal.append(i)

    lines = [_compress(root, [])]
    while True:
        room = budget - len(lines)
        order = sorted((i for i, ln in enumerate(lines) if ln.expandable), key=lambda i: -len(lines[i].keys))
        if room <= 0 or not order:
            break
        i = order[0]
        node, path = lines[i].nodes[0], lines[i].path
        parts: list[_Line] = []
        if node.terminal:
            parts.append(_Line([node], path, term=True))
        kids = [_compress(c, [*path, c.part]) for c in node.children.values()]
        if len(parts) + len(kids) - 1 <= room:
            parts += kids
        else:
            slots = room + 1 - len(parts)  # lines this node may take
            if slots < 2:  # no room to split this one: try the next biggest
                lines[i].frozen = True
                continue
            kids.sort(key=lambda ln: -len(ln.keys))
            keep, rest = kids[: slots - 1], kids[slots - 1:]
            parts += keep
            parts.append(_Line([n for ln in rest for n in ln.nodes], [*path, "*"]))
        lines[i: i + 1] = parts
    out = []
    for ln in lines:
        idx = ln.keys
        out.append((min(idx), Group(_render(ln, split), len(idx), tuple(keys[j] for j in sorted(idx)))))
    out.sort(key=lambda x: x[0])
    return [g for _, g in out]
