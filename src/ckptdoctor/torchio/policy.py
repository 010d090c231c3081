"""What ``ckptdoctor.load`` does with objects it will not rebuild: options, placeholders, warnings.

Nothing here imports torch: the policy objects are plain Python so that they can
be documented, pickled into reports and tested without the torch extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.errors import CkptdoctorError
from ckptdoctor.pickle.objects import Global

ON_UNKNOWN = ("placeholder", "error", "dict")
ANY = "-"  # a Replacements.add(needs=(ANY,)) entry that no allow=[...] can fix


class ReplacedObjectWarning(UserWarning):
    """``ckptdoctor.load`` returned data in place of an object torch would build by running code."""


class UnknownObjectError(CkptdoctorError):
    """``on_unknown="error"``: the file needs a class or function that was not allowed."""

    code = "unknown-object"


class NeedsTorch(CkptdoctorError, ImportError):
    """``ckptdoctor.load`` needs torch (the ``torch`` extra)."""

    code = "needs-torch"


class Placeholder:
    """Stands in for an object whose class ``ckptdoctor.load`` did not rebuild.

    ``qualname`` names what the file wanted to call (``module.Class``); ``args``,
    ``state``, ``listitems`` and ``dictitems`` are what pickle would have passed
    to it, already converted (tensors are real tensors). ``how`` is ``reduce``,
    ``newobj``, ``obj``, ``inst`` or ``global`` (a bare reference to a class or
    function, not a call).
    """

    __slots__ = ("qualname", "how", "args", "kwargs", "state", "listitems", "dictitems")

    def __init__(self, qualname: str, how: str = "global", args: tuple = (), kwargs: dict | None = None,
                 state: Any = None, listitems: list | None = None, dictitems: list | None = None) -> None:
        self.qualname = qualname
        self.how = how
        self.args = args
        self.kwargs = kwargs
        self.state = state
        self.listitems = listitems or []
        self.dictitems = dictitems or []

    @property
    def attrs(self) -> dict:
        """The instance ``__dict__`` pickle would have set (empty if the state is not a dict)."""
        st = self.state
        if isinstance(st, tuple) and len(st) == 2 and (st[0] is None or isinstance(st[0], dict)):
            merged = dict(st[0] or {})
            if isinstance(st[1], dict):
                merged.update(st[1])
            return merged
        return st if isinstance(st, dict) else {}

    def __getattr__(self, name: str) -> Any:
        # p.lr instead of p.attrs["lr"]; only for names the state actually has.
        if name.startswith("__"):
            raise AttributeError(name)
        attrs = self.attrs
        if name in attrs:
            return attrs[name]
        raise AttributeError(f"placeholder for {self.qualname} has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"<ckptdoctor.Placeholder {self.qualname}>"


def _names(obj: Any) -> list[str]:
    mod = getattr(obj, "__module__", None)
    out = []
    for attr in ("__qualname__", "__name__"):
        n = getattr(obj, attr, None)
        if mod and n and f"{mod}.{n}" not in out:
            out.append(f"{mod}.{n}")
    return out


@dataclass(slots=True)
class Options:
    """The caller's ``allow`` list and ``on_unknown`` policy, ready for lookups."""

    on_unknown: str = "placeholder"
    exact: dict[str, Any] = field(default_factory=dict)  # "module.qualname" -> allowed class / function
    by_name: dict[str, list[Any]] = field(default_factory=dict)  # "Class" -> allowed objects with that name

    @classmethod
    def make(cls, allow: Any = (), on_unknown: str = "placeholder") -> Options:
        if on_unknown not in ON_UNKNOWN:
            raise ValueError(f"on_unknown must be one of {', '.join(map(repr, ON_UNKNOWN))}, not {on_unknown!r}")
        if allow is None:
            allow = ()
        if isinstance(allow, (str, bytes)) or not hasattr(allow, "__iter__"):
            raise TypeError("allow must be a list of classes (or functions), e.g. allow=[MyModel]")
        opts = cls(on_unknown)
        for obj in allow:
            if isinstance(obj, str) or not callable(obj) or not _names(obj):
                raise TypeError(f"allow entries must be classes or functions you trust, not {obj!r}")
            for n in _names(obj):
                opts.exact[n] = obj
            for short in {getattr(obj, "__qualname__", None), getattr(obj, "__name__", None)} - {None}:
                opts.by_name.setdefault(short, []).append(obj)
        return opts

    def lookup(self, g: Global | str) -> Any | None:
        """The allowed object a global names, or None.

        A class the file names under ``__main__`` (a model defined in the training
        script) matches an allowed class of the same name from any module, if
        exactly one such class was allowed.
        """
        if isinstance(g, Global):
            names, module, name = (g.qualname, g.canonical), g.module, g.name
        else:
            names, (module, _, name) = (g,), g.rpartition(".")
        for n in names:
            hit = self.exact.get(n)
            if hit is not None:
                return hit
        if module == "__main__":
            cands = self.by_name.get(name, [])
            if len(cands) == 1:
                return cands[0]
        return None


@dataclass(slots=True)
class Replacements:
    """What was replaced and where (first place seen), for one warning per load."""

    items: dict[tuple[str, str], list] = field(default_factory=dict)  # (qualname, became) -> [count, path]
    needs: dict[str, None] = field(default_factory=dict)  # classes allow=[...] would need, in order

    def add(self, qualname: str, became: str, path: str, needs: tuple[str, ...] = ()) -> None:
        for n in needs or (qualname,):
            self.needs.setdefault(n, None)
        entry = self.items.get((qualname, became))
        if entry is None:
            self.items[(qualname, became)] = [1, path]
        else:
            entry[0] += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def message(self, name: str, limit: int = 8) -> str:
        parts = []
        for (qual, became), (count, path) in list(self.items.items())[:limit]:
            times = f" x{count}" if count > 1 else ""
            parts.append(f"{qual}{times} -> {became} (at {path or '<root>'})")
        more = f"; and {len(self.items) - limit} more" if len(self.items) > limit else ""
        allow = [q for q in self.needs if q != ANY and not q.startswith(("TorchScript module", "a Python 2 str",
                                                                          "persistent id", "numpy.ndarray"))]
        hint = (f". For a trusted file, pass allow=[...] with these classes to rebuild them: {', '.join(allow)}"
                if allow else "")
        return (f"ckptdoctor.load({name}): replaced what torch would build by running code: "
                + "; ".join(parts) + more + hint)
