"""Infer the key mapping that makes a checkpoint's state_dict match a target's keys.

The mapping is data: which nested state_dict to take (``extract``), an
ordered list of prefix :class:`Rule` s (strip ``module.``, add
``backbone.``, replace ``encoder.`` by ``backbone.`` — applied one after the
other to every key, exactly as ``ckptdoctor fix --rename`` applies them) and,
rarely, exact key renames. :meth:`Mapping.to_fix_args` turns it into that
command line.

Inference is greedy on *both* key sets: every unmatched checkpoint key is
lined up with the unmatched target keys that share its longest dotted
suffix; each distinct (old prefix, new prefix) is a candidate rule, scored by
how many keys match (same shape first, then same name) after applying it to
*all* keys; the best one is kept while it helps. This finds stacked wrappers
(``module._orig_mod.``), Lightning/EMA attribute prefixes (``model.``,
``net.``, ``ema.``) and added/renamed prefixes without a list of known names.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.match.keys import Candidate, Entry

MAX_RULES = 8
MAX_PROPOSALS = 24
SAMPLE = 4000
REPLACE_BUG_PREFIXES = ("module.", "_orig_mod.", "model.")


@dataclass(frozen=True, slots=True)
class Rule:
    """Replace the leading ``old`` by ``new`` (``old=""``: add ``new`` to every key)."""

    old: str
    new: str

    def apply(self, key: str) -> str:
        if not self.old:
            return self.new + key
        return self.new + key[len(self.old):] if key.startswith(self.old) else key

    @property
    def fix_rule(self) -> str:
        """The ``--rename`` argument of ``ckptdoctor fix`` (see ``ckptdoctor.fixes.rename``)."""
        if "=" in self.old or self.old.startswith("re:"):  # the rule syntax splits at '=': say it as a regex
            return f"re:^{_rx(self.old)}={_repl(self.new)}"
        return f"{self.old}={self.new}"

    def describe(self) -> str:
        if not self.new:
            return f"strip the prefix {self.old!r}"
        if not self.old:
            return f"add the prefix {self.new!r}"
        return f"replace the prefix {self.old!r} by {self.new!r}"

    def python(self) -> str:
        if not self.old:
            return f"k = {self.new!r} + k"
        if not self.new:
            return f"k = k.removeprefix({self.old!r})"
        return f"k = {self.new!r} + k[{len(self.old)}:] if k.startswith({self.old!r}) else k"

    def to_json(self) -> dict[str, str]:
        return {"old": self.old, "new": self.new, "fix": self.fix_rule, "description": self.describe()}


def _rx(s: str) -> str:
    return re.escape(s).replace("=", r"\x3d")


def _repl(s: str) -> str:
    return s.replace("\\", "\\\\")


@dataclass
class Mapping:
    """Extract, then prefix rules in order, then exact renames."""

    rules: list[Rule] = field(default_factory=list)
    renames: dict[str, str] = field(default_factory=dict)  # after the rules: exact key -> new key
    extract: str | None = None  # dotted path of the state_dict to take; "" = the root module object
    source: str = ""  # what the state_dict is (Candidate.origin)

    @property
    def renames_keys(self) -> bool:
        return bool(self.rules or self.renames)

    @property
    def is_identity(self) -> bool:
        return not self.renames_keys and self.extract is None

    def key(self, k: str) -> str:
        for r in self.rules:
            k = r.apply(k)
        return self.renames.get(k, k)

    def transforms(self) -> list[tuple[str, str]]:
        """The prefix rules as data: [(old_prefix, new_prefix), ...] in order."""
        return [(r.old, r.new) for r in self.rules]

    def to_fix_args(self) -> list[str]:
        args: list[str] = []
        if self.extract is not None:
            args.append("--extract-state-dict")
            if self.extract:
                args += ["--key", self.extract]
        for r in self.rules:
            args += ["--rename", r.fix_rule]
        for old, new in self.renames.items():
            args += ["--rename", f"re:^{_rx(old)}$={_repl(new)}"]
        return args

    def command(self, in_path: str, out_path: str | None = None) -> str:
        return shlex.join(["ckptdoctor", "fix", in_path, "-o", out_path or default_output(in_path),
                           *self.to_fix_args()])

    def python(self) -> str:
        """The same mapping as plain Python over a loaded state_dict ``sd``."""
        lines = []
        if self.extract:
            lines.append("sd = " + "sd" + "".join(f"[{p!r}]" if not p.isdigit() else f"[{p}]"
                                                  for p in self.extract.split(".")))
        if self.rules:
            lines.append("def rename(k):")
            for r in self.rules:
                lines.append(f"    {r.python()}")
            if self.renames:
                lines.append(f"    k = {self.renames!r}.get(k, k)")
            lines.append("    return k")
            lines.append("sd = {rename(k): v for k, v in sd.items()}")
        elif self.renames:
            lines.append(f"sd = {{{self.renames!r}.get(k, k): v for k, v in sd.items()}}")
        return "\n".join(lines)

    def describe(self) -> list[str]:
        out = []
        if self.extract is not None:
            out.append(f"take the state_dict {'of the ' + self.source if not self.extract else 'at ' + repr(self.extract)}")
        out += [r.describe() for r in self.rules]
        if self.renames:
            out.append(f"rename {len(self.renames)} key(s) exactly")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "extract": self.extract,
            "rules": [r.to_json() for r in self.rules],
            "transforms": [list(t) for t in self.transforms()],
            "renames": self.renames,
            "fix_args": self.to_fix_args(),
        }


def default_output(in_path: str) -> str:
    for suffix in (".safetensors", ".pth.tar", ".pt", ".pth", ".ckpt", ".bin", ".tar"):
        if in_path.endswith(suffix):
            return in_path[: -len(suffix)] + ".matched" + suffix
    return in_path + ".matched.pt"


def extract_for(c: Candidate) -> str | None:
    if c.path:
        return ".".join(str(p) for p in c.path)
    return "" if c.is_module_object else None


# ------------------------------------------------------------------------------------------ inference
def _splits(key: str) -> list[tuple[str, str]]:
    """(prefix, rest) at every dot, longest rest first: 'a.b.c' -> ('', 'a.b.c'), ('a.', 'b.c'), ('a.b.', 'c')."""
    parts = key.split(".")
    return [(".".join(parts[:i]) + ("." if i else ""), ".".join(parts[i:])) for i in range(len(parts))]


def _compatible(a: Entry, b: Entry) -> bool:
    if a.shape is None or b.shape is None:
        return True
    return a.shape == b.shape or (len(b.shape) == 0 and a.shape == (1,))


def _apply(rules: list[Rule], key: str) -> str:
    for r in rules:
        key = r.apply(key)
    return key


@dataclass(order=True)
class Score:
    good: int  # names that match with compatible shapes
    named: int  # names that match
    cost: int  # negative characters of rule text (simpler first)


def score(src: dict[str, Entry], tgt: dict[str, Entry], rules: list[Rule]) -> Score | None:
    """Matches after ``rules``; None if two keys would get the same name (``fix`` refuses that)."""
    seen: set[str] = set()
    good = named = 0
    for k, e in src.items():
        m = _apply(rules, k)
        if m in seen:
            return None
        seen.add(m)
        t = tgt.get(m)
        if t is not None:
            named += 1
            if _compatible(e, t):
                good += 1
    return Score(good, named, -sum(len(r.old) + len(r.new) for r in rules))


def _propose(us: list[str], ut: list[str]) -> list[Rule]:
    index: dict[str, list[str]] = {}
    for t in ut:
        for tp, rest in _splits(t):
            lst = index.setdefault(rest, [])
            if len(lst) < 16:
                lst.append(tp)
    if len(us) > SAMPLE:
        step = len(us) / SAMPLE
        us = [us[int(i * step)] for i in range(SAMPLE)]
    votes: Counter[Rule] = Counter()
    for s in us:
        for sp, rest in _splits(s):
            tps = index.get(rest)
            if not tps:
                continue
            first = rest.split(".", 1)[0]
            for tp in tps[:8]:
                if sp != tp:
                    votes[Rule(sp, tp)] += 1
                    if "." in rest:  # the same rule anchored one component deeper (touches fewer keys)
                        votes[Rule(sp + first + ".", tp + first + ".")] += 1
            break
    return [r for r, _ in votes.most_common(MAX_PROPOSALS)]


def infer_rules(src: dict[str, Entry], tgt: dict[str, Entry]) -> tuple[list[Rule], Score]:
    rules: list[Rule] = []
    best = score(src, tgt, rules) or Score(0, 0, 0)  # no rules: keys are a dict's, never collide
    for _ in range(MAX_RULES):
        mapped = [_apply(rules, k) for k in src]
        mapped_set = set(mapped)
        us = [m for m in mapped if m not in tgt]
        ut = [t for t in tgt if t not in mapped_set]
        if not us or not ut:
            break
        chosen: Rule | None = None
        chosen_score = best
        for r in _propose(us, ut):
            sc = score(src, tgt, [*rules, r])
            if sc is not None and (sc.good, sc.named) > (chosen_score.good, chosen_score.named):
                chosen, chosen_score = r, sc
            elif sc is not None and chosen is not None and (sc.good, sc.named) == (chosen_score.good,
                                                                                    chosen_score.named) \
                    and sc.cost > chosen_score.cost:
                chosen, chosen_score = r, sc
        if chosen is None:
            break
        rules.append(chosen)
        best = chosen_score
    return rules, best


@dataclass
class ReplaceBug:
    """Keys that ``str.replace(prefix, '')`` mangles (or already mangled)."""

    prefix: str
    at_risk: list[tuple[str, str]] = field(default_factory=list)  # (key, what k.replace would make of it)
    mangled: dict[str, str] = field(default_factory=dict)  # checkpoint key (after rules) -> target key


def replace_bug(src_keys: list[str], rules: list[Rule], tgt: dict[str, Entry]) -> list[ReplaceBug]:
    """Warn about ``k.replace('module.', '')``: it also cuts ``submodule.`` / ``encoder.module.`` inside keys."""
    out: list[ReplaceBug] = []
    mapped = {_apply(rules, k): k for k in src_keys}
    unmatched = {m for m in mapped if m not in tgt}
    stripped = {r.old for r in rules if r.old and not r.new}
    for p in sorted(stripped | set(REPLACE_BUG_PREFIXES)):
        bug = ReplaceBug(p)
        for m, k in mapped.items():
            if p in stripped and p in m and m in tgt:  # still contains p after the leading prefix is gone
                bug.at_risk.append((k, k.replace(p, "")))
        for t in tgt:
            if p in t and t not in mapped:
                damaged = t.replace(p, "")
                if damaged in unmatched and damaged not in tgt:
                    bug.mangled[damaged] = t
        if bug.at_risk or bug.mangled:
            out.append(bug)
    return out


@dataclass
class Inference:
    mapping: Mapping
    candidate: Candidate
    score: Score
    replace_bugs: list[ReplaceBug]
    alternatives: list[tuple[Candidate, Score]]


def infer(sources: list[Candidate], target: Candidate) -> Inference:
    """The best (candidate state_dict, mapping) for ``target``."""
    results: list[tuple[Candidate, list[Rule], Score]] = []
    for c in sources:
        rules, sc = infer_rules(c.entries, target.entries)
        results.append((c, rules, sc))
    results.sort(key=lambda r: (-r[2].good, -r[2].named, r[0].rank, len(r[0].path)))
    cand, rules, sc = results[0]
    bugs = replace_bug(list(cand.entries), rules, target.entries)
    renames: dict[str, str] = {}
    for b in bugs:
        for damaged, t in b.mangled.items():
            renames.setdefault(damaged, t)
    if renames:
        new = score_with_renames(cand.entries, target.entries, rules, renames)
        if new is not None and (new.good, new.named) > (sc.good, sc.named):
            sc = new
        else:
            renames = {}
    mapping = Mapping(rules, renames, extract_for(cand), cand.origin)
    alts = [(c, s) for c, _, s in results[1:]]
    return Inference(mapping, cand, sc, bugs, alts)


def score_with_renames(src: dict[str, Entry], tgt: dict[str, Entry], rules: list[Rule],
                       renames: dict[str, str]) -> Score | None:
    seen: set[str] = set()
    good = named = 0
    for k, e in src.items():
        m = _apply(rules, k)
        m = renames.get(m, m)
        if m in seen:
            return None
        seen.add(m)
        t = tgt.get(m)
        if t is not None:
            named += 1
            good += _compatible(e, t)
    return Score(good, named, 0)


def apply_mapping(c: Candidate, m: Mapping) -> tuple[dict[str, Entry], dict[str, int | None] | None]:
    """The candidate's entries and ``_metadata`` as ``ckptdoctor fix`` writes them after ``m``."""
    entries = {m.key(k): e for k, e in c.entries.items()}
    meta = None
    if c.metadata is not None:
        meta = {}
        for mk, v in c.metadata.items():
            nk = m.key(mk + ".") if mk else m.key("")
            meta[nk[:-1] if nk.endswith(".") else nk] = v
    return entries, meta
