"""Circuits: find one automatically (the sketch), name its heads' roles, and check it.

* :func:`sketch_circuit` walks the seeds' procedure (direct heads -> path patching into their
  queries, keys and values -> detectors -> backup heads) and returns a :class:`Circuit` with a
  role, a score with its 95% interval and the evidence for every head;
* :func:`evaluate_circuit` measures how much of the behaviour a set of heads explains with
  everything else ablated: faithfulness, completeness, minimality and the faithfulness curve;
* :func:`discovery_scores` compares a found circuit with a planted one (``ground_truth.json``).
"""

from circuitscope.circuit.circuit import Circuit, Edge, Evidence, HeadRecord
from circuitscope.circuit.completeness import Completeness, CompletenessPoint, Minimality
from circuitscope.circuit.curve import FaithfulnessCurve, faithfulness_curve
from circuitscope.circuit.estimate import Estimate, estimate_mean, estimate_of_means
from circuitscope.circuit.evaluate import CircuitEvaluation, evaluate_circuit, faithfulness, normalized_faithfulness
from circuitscope.circuit.ground_truth import discovery_scores, load_ground_truth
from circuitscope.circuit.node_ablation import CircuitAblation
from circuitscope.circuit.roles import ROLES, HeadFacts, SketchConfig, assign_role
from circuitscope.circuit.sketch import sketch_circuit

__all__ = [
    "sketch_circuit", "Circuit", "HeadRecord", "Evidence", "Edge", "SketchConfig", "ROLES", "HeadFacts", "assign_role",
    "evaluate_circuit", "CircuitEvaluation", "faithfulness", "normalized_faithfulness", "faithfulness_curve",
    "FaithfulnessCurve", "Completeness", "CompletenessPoint", "Minimality", "CircuitAblation",
    "Estimate", "estimate_mean", "estimate_of_means", "discovery_scores", "load_ground_truth",
]
