"""The nodes of a circuit: attention heads, MLPs and the embeddings, and how to write them.

A head is ablated at its ``hook_z`` ``[batch, pos, head, d_head]``, an MLP at ``hook_mlp_out``,
the embeddings at ``blocks.0.hook_resid_pre``. ``nodes`` says which of them may be ablated:

* ``"heads"`` (default, the IOI paper): only heads; MLPs and embeddings always stay;
* ``"heads+mlps"``: MLPs outside the circuit are ablated too (attention-only models have none);
* ``"all"``: the embeddings as well, unless ``"embed"`` is in the circuit.

A circuit lists heads as ``(layer, head)`` pairs (or labels ``"L3H3"``), MLPs as ``"MLP3"`` and
the embeddings as ``"embed"``; a sketched :class:`~circuitscope.circuit.circuit.Circuit` works
too (its ``heads``). Bare integers are refused: ``[3, 3]`` more likely means the head ``(3, 3)``
than two MLPs.
"""

from __future__ import annotations

import numbers
import re
from typing import Any, Iterable, Union

import torch

from circuitscope.analysis._typing import Bool, Tensor

__all__ = ["NODE_MODES", "Node", "NodeSpace", "node_label", "is_int"]

NODE_MODES = ("heads", "heads+mlps", "all")

Node = Union[tuple[int, int], str]  # (layer, head), "MLP3" or "embed"
_HEAD_LABEL = re.compile(r"^L(\d+)H(\d+)$", re.IGNORECASE)
_MLP_LABEL = re.compile(r"^MLP(\d+)$", re.IGNORECASE)


def node_label(node: Node) -> str:
    """``(3, 3)`` -> ``"L3H3"``; MLP and embedding labels pass through."""
    return f"L{node[0]}H{node[1]}" if isinstance(node, tuple) else node


class NodeSpace:
    """The nodes of a model that ``nodes`` lets us ablate, numbered ``0 .. n - 1``.

    Heads come first (``layer * n_heads + head``), then MLPs by layer, then ``"embed"``.
    """

    def __init__(self, model, nodes: str = "heads"):
        if nodes not in NODE_MODES:
            raise ValueError(f"unknown nodes={nodes!r}; use one of {NODE_MODES} (which components may be ablated)")
        cfg = model.cfg
        self.mode = nodes
        self.n_layers, self.n_heads = int(cfg.n_layers), int(cfg.n_heads)
        self.attn_only = bool(getattr(cfg, "attn_only", False))
        self.nodes: list[Node] = [(l, h) for l in range(self.n_layers) for h in range(self.n_heads)]
        if nodes != "heads" and not self.attn_only:
            self.nodes += [f"MLP{l}" for l in range(self.n_layers)]
        if nodes == "all":
            self.nodes.append("embed")
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self.n_head_nodes = self.n_layers * self.n_heads

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def n_mlp_nodes(self) -> int:
        return sum(1 for n in self.nodes if isinstance(n, str) and n.startswith("MLP"))

    @property
    def has_embed(self) -> bool:
        return self.mode == "all"

    def describe(self) -> str:
        what = {"heads": "heads (MLPs and embeddings always kept)", "heads+mlps": "heads and MLPs (embeddings kept)",
                "all": "heads, MLPs and embeddings"}[self.mode]
        if self.attn_only and self.mode != "heads":
            what += "; the model is attention-only, so it has no MLP nodes"
        return what

    def node(self, item: Any, what: str = "heads") -> Node:
        """One node from a ``(layer, head)`` pair, ``"L3H3"``, ``"MLP3"`` or ``"embed"``; checked."""
        if isinstance(item, str):
            text = item.strip()
            m = _HEAD_LABEL.match(text)
            if m:
                return self._head(int(m.group(1)), int(m.group(2)), what)
            m = _MLP_LABEL.match(text)
            if m:
                return self._mlp(int(m.group(1)), what)
            if text.lower() == "embed":
                if self.mode != "all":
                    raise ValueError(f"{what}: 'embed' is a node only with nodes='all' (with nodes={self.mode!r} "
                                     "the embeddings are never ablated); pass nodes='all' or drop 'embed'")
                return "embed"
            raise ValueError(f"{what}: cannot read the node {item!r}; write heads as (layer, head) or 'L3H3', "
                             "MLPs as 'MLP3' and the embeddings as 'embed'")
        if isinstance(item, torch.Tensor):
            item = item.tolist()
        if isinstance(item, (bool, numbers.Number)):
            raise TypeError(f"{what}: got the bare number {item!r}; give a head as a (layer, head) pair, e.g. "
                            f"[(3, 3)] rather than [3, 3], and an MLP as 'MLP3'")
        try:
            pair = tuple(item)
        except TypeError:
            raise TypeError(f"{what}: cannot read the node {item!r}; give heads as (layer, head) pairs") from None
        if len(pair) != 2 or not all(is_int(x) for x in pair):
            raise ValueError(f"{what}: a head is a (layer, head) pair of integers, got {item!r}")
        return self._head(int(pair[0]), int(pair[1]), what)

    def _head(self, layer: int, head: int, what: str) -> Node:
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise ValueError(f"{what}: head {(layer, head)} is out of range: the model has layers 0..{self.n_layers - 1} "
                             f"and heads 0..{self.n_heads - 1}")
        return (layer, head)

    def _mlp(self, layer: int, what: str) -> Node:
        if self.attn_only:
            raise ValueError(f"{what}: this model is attention-only, it has no MLP{layer}")
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"{what}: MLP{layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        if self.mode == "heads":
            raise ValueError(f"{what}: MLP{layer} is not a node with nodes='heads' (MLPs are never ablated there, so "
                             "they are always in the circuit); pass nodes='heads+mlps' to ablate MLPs outside it")
        return f"MLP{layer}"

    def parse(self, items: Any, what: str = "heads") -> list[Node]:
        """The nodes of a circuit, in the given order; refuses duplicates and unknown nodes."""
        if items is None:
            raise TypeError(f"{what} is None; pass a list of heads such as [(3, 3), (3, 0)] (an empty list is the empty circuit)")
        if hasattr(items, "heads") and not isinstance(items, (list, tuple, dict)):
            items = items.heads  # a sketched Circuit
        if isinstance(items, str):
            raise TypeError(f"{what} must be a list of nodes, got the single string {items!r}; wrap it: [{items!r}]")
        if isinstance(items, torch.Tensor):
            if items.ndim == 1 and items.shape[0] == 2:
                raise TypeError(f"{what} must be a list of heads; wrap a single head: [{tuple(items.tolist())}]")
            items = items.tolist()
        items = list(items)
        if len(items) == 2 and all(is_int(x) for x in items):
            raise TypeError(f"{what} must be a list of heads, got the pair {tuple(items)}; wrap a single head: "
                            f"[{tuple(items)}]")
        nodes = [self.node(x, what) for x in items]
        seen: set = set()
        dups = [node_label(n) for n in nodes if n in seen or seen.add(n)]
        if dups:
            raise ValueError(f"{what} lists {', '.join(dups)} more than once; each node may appear only once")
        return nodes

    def mask(self, nodes: Iterable[Node]) -> Bool[Tensor, "node"]:
        """``[node]`` True on the given nodes."""
        m = torch.zeros(len(self), dtype=torch.bool)
        for n in nodes:
            m[self.index[n]] = True
        return m

    def full(self) -> Bool[Tensor, "node"]:
        return torch.ones(len(self), dtype=torch.bool)

    def empty(self) -> Bool[Tensor, "node"]:
        return torch.zeros(len(self), dtype=torch.bool)


def is_int(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.ndim == 0 and not x.is_floating_point() and x.dtype != torch.bool
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)
