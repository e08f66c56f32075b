"""Activation patching, path patching, attribution patching and ablation.

``sweep(model, task, what, by)`` runs a whole activation-patching sweep exactly, restarting each
patched run at the patched layer and position; the TransformerLens-style ``get_act_patch_*``
functions are the same engine behind the familiar signatures.
"""

from circuitscope.patching.ablation import Ablation, ablate, ablated, backup_heads
from circuitscope.patching.attribution import attribution_sweep, correlation
from circuitscope.patching.engine import SweepStats, run_sweep
from circuitscope.patching.path import path_patch
from circuitscope.patching.result import PatchResult, position_labels
from circuitscope.patching.sweep import sweep
from circuitscope.patching.tl_compat import *  # noqa: F401,F403  (the TransformerLens names)
from circuitscope.patching.tl_compat import __all__ as _tl_names

__all__ = ["PatchResult", "SweepStats", "path_patch", "position_labels", "run_sweep", "sweep", *_tl_names]
__all__ += ["Ablation", "ablate", "ablated", "backup_heads", "attribution_sweep", "correlation"]
