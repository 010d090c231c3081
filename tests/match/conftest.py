"""Fixtures for the match tests: the test models on sys.path, torch's own verdict on a state_dict."""

from __future__ import annotations

import re
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `--to match_models:build` imports from here, as a user's own module
    sys.path.insert(0, str(HERE))


def torch_verdict(model: Any, sd: Any) -> tuple[set[str], set[str], set[str]]:
    """(missing, unexpected, size-mismatched) exactly as torch's load_state_dict(strict=False) finds them.

    torch raises on size mismatches even with strict=False; their keys are read from the error and the
    call repeated with those tensors replaced by ones of the model's shape to get missing/unexpected.
    """
    import torch

    try:
        r = model.load_state_dict(sd, strict=False)
        return set(r.missing_keys), set(r.unexpected_keys), set()
    except RuntimeError as e:
        sizes = set(re.findall(r"size mismatch for ([^:]+):", str(e)))
        if not sizes:
            raise
    own = model.state_dict()
    sd2 = OrderedDict((k, torch.zeros_like(own[k]) if k in sizes else v) for k, v in sd.items())
    if hasattr(sd, "_metadata"):
        sd2._metadata = sd._metadata  # type: ignore[attr-defined]
    r = model.load_state_dict(sd2, strict=False)
    return set(r.missing_keys), set(r.unexpected_keys), sizes


def tload(path: Any, **kw: Any) -> Any:
    import torch

    kw.setdefault("map_location", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, **kw)


def cli(*args: str) -> tuple[int, str, str]:
    """Run the ckptdoctor CLI in this process: (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from ckptdoctor.cli import app

    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()
    r = runner.invoke(app, list(args), catch_exceptions=False)
    err = r.stderr if r.stderr_bytes is not None else ""
    return r.exit_code, r.stdout, err
