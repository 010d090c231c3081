"""``ckptdoctor match``: will this checkpoint load into that model, and what mapping makes it?

::

    from ckptdoctor.match import match
    rep = match("ddp.pt", "mypkg.models:build")      # or another checkpoint, or a {key: shape} JSON
    rep.as_saved.missing, rep.as_saved.unexpected     # what load_state_dict(strict=False) reports
    rep.mapping.to_fix_args()                         # ['--rename', 'module.=']

Modules: :mod:`.keys` (both sides' keys), :mod:`.mapping` (inferred rename),
:mod:`.compare` (torch's rules), :mod:`.shapes` / :mod:`.batchnorm`
(explanations), :mod:`.optimizer` (optimizer state), :mod:`.optim_fix`
(the ``optimizer-compat`` fix step), :mod:`.report` (text/JSON).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ckptdoctor.match.report import MatchReport

__all__ = ["match"]


def match(checkpoint: str, target: str, *, torch: str | None = None, key: str | None = None) -> MatchReport:
    """Compare ``checkpoint``'s state_dict with ``target`` (checkpoint, JSON key list or ``module:callable``)."""
    from ckptdoctor.match.keys import MatchInputError, from_checkpoint, load_side
    from ckptdoctor.match.mapping import infer
    from ckptdoctor.match.report import build

    if torch is not None:
        from packaging.version import InvalidVersion, Version

        try:
            Version(torch.split("+", 1)[0])
        except InvalidVersion:
            raise MatchInputError(f"--torch {torch!r} is not a version number (e.g. 1.11, 2.4)") from None
        torch = torch.split("+", 1)[0]
    ckpt = from_checkpoint(checkpoint)
    tgt = load_side(target)
    cands = ckpt.candidates
    if key is not None:
        cands = [c for c in cands if c.where == key]
        if not cands:
            where = ", ".join(repr(c.where) for c in ckpt.candidates) or "none"
            raise MatchInputError(f"{checkpoint}: no state_dict at {key!r} (found: {where})")
    inference = infer(cands, tgt.primary)
    return build(ckpt, tgt, inference, torch=torch)
