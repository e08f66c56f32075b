"""Circuits: find one automatically (the sketch), name its heads' roles, and check it.

``evaluate`` measures how much of the model's behaviour a set of heads explains when everything
else is ablated (faithfulness, completeness, minimality, faithfulness curves).
"""

from circuitscope.circuit.estimate import Estimate, estimate_mean, estimate_of_means

__all__ = ["Estimate", "estimate_mean", "estimate_of_means"]
