"""Why two tensors with the same name have different shapes: explained suggestions, never applied.

Each size mismatch is classified (classifier head vs num_classes, first conv
in_chans, positional-embedding grid, vocabulary rows, legacy 0-d/1-d
scalars, transposed Conv1D-style weights, same-size reshapes); mismatches of
one kind and one layer become one :class:`~ckptdoctor.findings.Finding`.
torch refuses size mismatches even with ``strict=False``, so every
suggestion says what to do with those keys before loading.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.match.keys import Candidate

Shape = tuple[int, ...]

POS_RE = re.compile(r"(^|[._])(pos(itional)?_?emb(ed|edding|eddings)?|position_embeddings?|absolute_pos_embed)"
                    r"($|[._])", re.I)
REL_POS_RE = re.compile(r"relative_position_bias_table$")
VOCAB_RE = re.compile(r"(^|[._])(embed_tokens|word_embeddings|wte|tok_embeddings|token_embedding|tok_emb|"
                      r"embeddings?|lm_head|shared|decoder|output|emb)([._]|$)", re.I)


@dataclass
class Mismatch:
    key: str
    ckpt: Shape
    target: Shape


@dataclass
class Explained:
    kind: str
    layer: str
    items: list[Mismatch] = field(default_factory=list)
    detail: dict = field(default_factory=dict)


def _layer(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _grid(n: int) -> tuple[int, int] | None:
    """(grid side, extra tokens) for a token count: 197 -> (14, 1), 196 -> (14, 0), 577 -> (24, 1)."""
    for extra in (0, 1, 2, 4, 8):
        g = math.isqrt(max(0, n - extra))
        if g > 1 and g * g == n - extra:
            return g, extra
    return None


def _first_conv(target: Candidate) -> str | None:
    for k, e in target.entries.items():
        if e.shape is not None and len(e.shape) >= 3 and k.endswith("weight"):
            return k
    return None


def _last_layers(target: Candidate, n: int = 2) -> set[str]:
    """The last ``n`` layers with a 2-d weight (where classifier heads live; ``head_dist`` is second)."""
    layers: list[str] = []
    for k, e in target.entries.items():
        if e.shape is not None and len(e.shape) == 2 and _layer(k) not in layers:
            layers.append(_layer(k))
    return set(layers[-n:])


def classify(m: Mismatch, target: Candidate, first_conv: str | None, last: set[str]) -> tuple[str, dict]:
    a, b, k = m.ckpt, m.target, m.key
    if len(a) <= 1 and len(b) <= 1 and (a in ((), (1,)) or b in ((), (1,))):
        return "scalar", {}
    if REL_POS_RE.search(k) and len(a) == 2 and a[1] == b[1]:
        return "relpos", {"ckpt_window": _window(a[0]), "target_window": _window(b[0])}
    if POS_RE.search(k) and len(a) == len(b) and len(a) in (2, 3) and a[-1] == b[-1]:
        ga, gb = _grid(a[-2]), _grid(b[-2])
        if len(a) == 3 and ga and gb:
            return "posgrid", {"ckpt_grid": ga, "target_grid": gb}
        return "positions", {}
    if len(a) == 2 and len(b) == 2 and a == b[::-1] and a != b:
        return "transposed", {}
    if len(a) == 2 and len(b) == 2 and a[1] == b[1] and a[0] != b[0] and VOCAB_RE.search(k) \
            and max(a[0], b[0]) >= 1000:
        return "vocab", {}
    if len(a) == len(b) and len(a) >= 3 and a[0] == b[0] and a[2:] == b[2:] and a[1] != b[1] and k == first_conv:
        return "in_chans", {}
    head_like = _layer(k) in last
    if head_like and len(a) == len(b) and len(a) in (1, 2) and a[0] != b[0] and a[1:] == b[1:]:
        return "head", {}
    if math.prod(a) == math.prod(b):
        return "reshape", {}
    return "size", {}


def _window(n: int) -> int | None:
    r = math.isqrt(n)
    if r * r == n and r % 2 == 1:
        return (r + 1) // 2
    return None


def explain(mismatches: list[Mismatch], target: Candidate, ckpt_path: str = "CKPT",
            legacy_scalars: list[str] | None = None) -> list[Finding]:
    first_conv = _first_conv(target)
    last = _last_layers(target)
    groups: dict[tuple[str, str], Explained] = {}
    for m in mismatches:
        kind, detail = classify(m, target, first_conv, last)
        per_layer = kind in ("head", "vocab", "posgrid", "in_chans", "relpos", "positions")
        g = groups.setdefault((kind, _layer(m.key) if per_layer else ""), Explained(kind, _layer(m.key), detail=detail))
        g.items.append(m)
    out = [_finding(g) for g in groups.values()]
    if legacy_scalars:
        out.append(Finding(
            "CKD-MATCH-SCALAR-LEGACY", Severity.INFO,
            f"{len(legacy_scalars)} one-element 1-d tensor(s) load into 0-d entries",
            "The checkpoint stores these as shape (1,) where the model has a 0-d tensor (torch <= 0.3 had no "
            "0-d tensors). load_state_dict converts a (1,) tensor to 0-d by itself, so they load.",
            {"keys": legacy_scalars}))
    return out


def _shapes(ms: list[Mismatch]) -> str:
    return "; ".join(f"{m.key}: {list(m.ckpt)} in the checkpoint, {list(m.target)} in the model" for m in ms[:3]) + \
        (f"; and {len(ms) - 3} more" if len(ms) > 3 else "")


def _drop_python(ms: list[Mismatch]) -> str:
    keys = [m.key for m in ms]
    return (f"sd = {{k: v for k, v in sd.items() if k not in {keys!r}}}; "
            "model.load_state_dict(sd, strict=False)  # these layers keep their fresh initialisation")


def _finding(g: Explained) -> Finding:
    ms = g.items
    a, b = ms[0].ckpt, ms[0].target
    ev = {"keys": [m.key for m in ms], "checkpoint_shapes": [list(m.ckpt) for m in ms],
          "target_shapes": [list(m.target) for m in ms]}
    drop = Fix("load everything else; these layers stay freshly initialised (torch refuses size mismatches "
               "even with strict=False, so remove the keys first)", python=_drop_python(ms))
    if g.kind == "head":
        return Finding(
            "CKD-MATCH-SHAPE-HEAD", Severity.ERROR,
            f"classifier head {g.layer or ms[0].key!r}: {a[0]} outputs in the checkpoint, {b[0]} in the model",
            f"The last layer was trained for {a[0]} classes and the model is built for {b[0]} (num_classes). "
            f"Build the model with num_classes={a[0]} to use the trained head, or fine-tune: drop the head's "
            f"keys and load the rest. {_shapes(ms)}.", ev, drop, blocks_load=True)
    if g.kind == "in_chans":
        wsum = "w.sum(dim=1, keepdim=True)" if b[1] == 1 else \
            f"w.repeat(1, {math.ceil(b[1] / a[1])}, 1, 1)[:, :{b[1]}] * {a[1]} / {b[1]}"
        return Finding(
            "CKD-MATCH-SHAPE-IN-CHANS", Severity.ERROR,
            f"first convolution {ms[0].key!r}: {a[1]} input channels in the checkpoint, {b[1]} in the model",
            f"The network was trained on {a[1]}-channel input and the model is built for {b[1]} (in_chans). "
            f"Build it with in_chans={a[1]}, or adapt the kernel as timm's adapt_input_conv does: "
            f"{wsum}. {_shapes(ms)}.", ev,
            Fix("adapt the first convolution's weight to the model's input channels",
                python=f"w = sd[{ms[0].key!r}]; sd[{ms[0].key!r}] = {wsum}"), blocks_load=True)
    if g.kind == "posgrid":
        (ga, ea), (gb, eb) = g.detail["ckpt_grid"], g.detail["target_grid"]
        return Finding(
            "CKD-MATCH-SHAPE-POS-GRID", Severity.ERROR,
            f"positional embedding {ms[0].key!r}: a {ga}x{ga} grid in the checkpoint, {gb}x{gb} in the model",
            f"The checkpoint was trained on a {ga}x{ga} patch grid (+{ea} extra token(s)), the model expects "
            f"{gb}x{gb} (+{eb}): a different image size or patch size. Resample the grid part by bicubic "
            f"interpolation and keep the extra tokens (timm: resample_abs_pos_embed(w, ({gb}, {gb}), "
            f"num_prefix_tokens={ea})), or build the model with the checkpoint's img_size. {_shapes(ms)}.", ev,
            Fix("resample the positional embedding to the model's grid",
                python=f"from timm.layers import resample_abs_pos_embed; sd[{ms[0].key!r}] = "
                       f"resample_abs_pos_embed(sd[{ms[0].key!r}], ({gb}, {gb}), num_prefix_tokens={ea})"),
            blocks_load=True)
    if g.kind == "relpos":
        wa, wb = g.detail.get("ckpt_window"), g.detail.get("target_window")
        win = f" (window {wa} vs {wb})" if wa and wb else ""
        return Finding(
            "CKD-MATCH-SHAPE-REL-POS", Severity.ERROR,
            f"relative position bias table {ms[0].key!r}: {a[0]} rows in the checkpoint, {b[0]} in the model{win}",
            "The attention window size differs; interpolate the bias table to the new window or build the "
            f"model with the checkpoint's window size. {_shapes(ms)}.", ev, drop, blocks_load=True)
    if g.kind == "positions":
        return Finding(
            "CKD-MATCH-SHAPE-POSITIONS", Severity.ERROR,
            f"position embeddings {ms[0].key!r}: {a[-2]} positions in the checkpoint, {b[-2]} in the model",
            "The maximum sequence length differs (max_position_embeddings). Build the model with the "
            f"checkpoint's length, or copy the first rows / interpolate. {_shapes(ms)}.", ev, drop, blocks_load=True)
    if g.kind == "vocab":
        return Finding(
            "CKD-MATCH-SHAPE-VOCAB", Severity.ERROR,
            f"vocabulary {g.layer or ms[0].key!r}: {a[0]} rows in the checkpoint, {b[0]} in the model",
            f"The embedding/output matrix has one row per token: the checkpoint's tokenizer has {a[0]} tokens and "
            f"the model {b[0]} (tokens added or removed, or vocabulary padded to a multiple of 8/64). Build the "
            f"model with vocab_size={a[0]} and resize afterwards (transformers: model.resize_token_embeddings), "
            f"or copy the shared rows. {_shapes(ms)}.", ev,
            Fix("load with the checkpoint's vocabulary size, then resize",
                python=f"model.resize_token_embeddings({a[0]}); model.load_state_dict(sd); "
                       f"model.resize_token_embeddings({b[0]})"), blocks_load=True)
    subject = repr(ms[0].key) if len(ms) == 1 else f"{len(ms)} tensors (e.g. {ms[0].key!r})"
    keys = [m.key for m in ms]
    if g.kind == "scalar":
        return Finding(
            "CKD-MATCH-SHAPE-SCALAR", Severity.ERROR,
            f"{subject}: shape {list(a)} in the checkpoint, {list(b)} in the model (0-d vs 1-d scalar)",
            "torch <= 0.3 had no 0-d tensors, so old checkpoints store scalars as shape (1,); load_state_dict "
            f"only converts (1,) into a 0-d entry, not the other way round. Reshape them. {_shapes(ms)}.", ev,
            Fix("reshape to the model's shapes",
                python=f"for k in {keys!r}: sd[k] = sd[k].reshape(model.state_dict()[k].shape)"), blocks_load=True)
    if g.kind == "transposed":
        return Finding(
            "CKD-MATCH-SHAPE-TRANSPOSED", Severity.ERROR,
            f"{subject}: {list(a)} in the checkpoint is the model's {list(b)} transposed",
            "A Conv1D-style layer (GPT-2 in transformers, many TF ports) stores weights as (in, out); nn.Linear "
            f"stores (out, in). Transpose them. {_shapes(ms)}.", ev,
            Fix("transpose the weights", python=f"for k in {keys!r}: sd[k] = sd[k].t().contiguous()"),
            blocks_load=True)
    if g.kind == "reshape":
        return Finding(
            "CKD-MATCH-SHAPE-RESHAPE", Severity.ERROR,
            f"{subject}: same number of elements, another shape ({list(a)} vs {list(b)})",
            "Same size, another layout (a 1x1 convolution vs a Linear, a fused vs split projection, flattened "
            f"dims). Check the layout before reshaping. {_shapes(ms)}.", ev,
            Fix("reshape if the layouts agree",
                python=f"for k in {keys!r}: sd[k] = sd[k].reshape(model.state_dict()[k].shape)"), blocks_load=True)
    return Finding(
        "CKD-MATCH-SHAPE", Severity.ERROR,
        f"{subject}: other sizes ({list(a)} in the checkpoint, {list(b)} in the model)",
        "These layers have other sizes: the model is configured differently from the one that was saved "
        f"(width, heads, expansion ratio). Build the model with the checkpoint's configuration. {_shapes(ms)}.",
        ev, drop, blocks_load=True)
