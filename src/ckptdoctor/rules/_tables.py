"""Moved to :mod:`ckptdoctor.tables` (outside the rules package, so that ``inspect``'s producer
estimate can read the tables without importing every rule family); this name keeps working."""

from ckptdoctor.tables import *  # noqa: F403
from ckptdoctor.tables import (  # noqa: F401 - re-exported, including the private table
    PRE_1_0,
    first_version,
    has,
    parse_version,
    release,
    span,
    torch_features,
    weights_only_table,
    weights_only_versions,
)
