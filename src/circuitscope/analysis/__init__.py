"""Analyses built on a model, a task and a cache (direct logit attribution, logit lens)."""

from circuitscope.analysis.attribution import head_attribution, layer_attribution, logit_lens

__all__ = ["head_attribution", "layer_attribution", "logit_lens"]
