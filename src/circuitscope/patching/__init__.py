"""Activation patching, path patching, attribution patching and ablation (being built)."""

from circuitscope.patching.result import PatchResult, position_labels

__all__ = ["PatchResult", "position_labels"]
