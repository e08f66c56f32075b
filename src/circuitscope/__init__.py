"""circuitscope: find and verify circuits inside transformer language models."""

from circuitscope.cache import ActivationCache
from circuitscope.hooks import HookPoint
from circuitscope.model.config import TransformerConfig
from circuitscope.model.factored_matrix import FactoredMatrix
from circuitscope.model.hooked_transformer import HookedTransformer
from circuitscope.names import get_act_name

HookedTransformerConfig = TransformerConfig  # the name TransformerLens users know

__all__ = [
    "ActivationCache",
    "FactoredMatrix",
    "HookPoint",
    "HookedTransformer",
    "HookedTransformerConfig",
    "TransformerConfig",
    "get_act_name",
]
__version__ = "0.1.0"
