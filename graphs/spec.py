"""A graph as plain frozen data, the shape both the engine and the files use.

A graph file (`graphs/builtin/*.json`) holds `{name, description, nodes:[{id,
type, config}], edges:[{from, to, condition}], config}`; the graph-level `config`
is optional (its keys: `graphs/config.py`). A prompt may be written as a list of
lines for readability; it is joined with newlines on load.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import GraphError

_CONDITION = re.compile(
    r"""^\s*(?:
        (?P<neg>not\s+)?(?P<flag>[a-z_][a-z0-9_]*)
      | (?P<key>[a-z_][a-z0-9_]*)\s*(?P<op>==|!=)\s*(?P<value>"[^"]*"|-?\d+(?:\.\d+)?|true|false|null)
    )\s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Condition:
    """An edge condition over the source node's output.

    The grammar is deliberately tiny: empty (always), `key`, `not key`,
    `key == <json literal>`, `key != <json literal>`.
    """

    text: str
    """The condition as written."""
    key: str = ""
    """The output field it reads; empty for an unconditional edge."""
    op: str = "always"
    """One of always, truthy, falsy, eq, ne."""
    value: Any = None
    """The literal compared against, for eq and ne."""

    def holds(self, output: dict[str, Any]) -> bool:
        """Whether the edge fires for this output of its source node."""
        if self.op == "always":
            return True
        actual = output.get(self.key)
        if self.op == "truthy":
            return bool(actual)
        if self.op == "falsy":
            return not actual
        if self.op == "eq":
            return actual == self.value
        return actual != self.value


def parse_condition(text: str) -> Condition:
    """Parse an edge condition; raise GraphError with the text if it is malformed."""
    text = (text or "").strip()
    if not text:
        return Condition(text="")
    match = _CONDITION.match(text)
    if not match:
        raise GraphError(
            f"cannot parse condition {text!r}: use `key`, `not key`, "
            '`key == "value"` or `key != "value"`'
        )
    if match["flag"]:
        return Condition(text=text, key=match["flag"], op="falsy" if match["neg"] else "truthy")
    return Condition(
        text=text,
        key=match["key"],
        op="eq" if match["op"] == "==" else "ne",
        value=json.loads(match["value"]),
    )


@dataclass(frozen=True)
class NodeSpec:
    """A node of a graph."""

    id: str
    """Unique within the graph."""
    type: str
    """A registered node type (input, director, thinker, ...)."""
    config: dict[str, Any] = field(default_factory=dict)
    """prompt, model, temperature, tools, ... as the node type reads them."""


@dataclass(frozen=True)
class EdgeSpec:
    """A directed edge; it fires when its condition holds on the source's output."""

    source: str
    """The node it leaves."""
    target: str
    """The node it triggers in the next frame."""
    condition: str = ""
    """The condition text; empty means always."""


@dataclass(frozen=True)
class GraphSpec:
    """A whole graph definition."""

    name: str
    """The graph's unique name."""
    description: str
    """What the graph is for."""
    nodes: tuple[NodeSpec, ...]
    """Nodes in their defined order (which fixes the commit order in a frame)."""
    edges: tuple[EdgeSpec, ...]
    """Edges in their defined order."""
    config: dict[str, Any] = field(default_factory=dict)
    """Graph-level settings such as `double_texting` (known keys: `graphs/config.py`)."""

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id; GraphError if there is none."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise GraphError(f"graph {self.name!r} has no node {node_id!r}")

    def as_data(self) -> dict[str, Any]:
        """The graph in the file format (the JSON the built-in files use).

        `config` appears only when it holds something, so a graph without one keeps
        the data, and so the digest, it had before graphs had a config.
        """
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "nodes": [{"id": n.id, "type": n.type, "config": n.config} for n in self.nodes],
            "edges": [
                {"from": e.source, "to": e.target, "condition": e.condition} for e in self.edges
            ],
        }
        if self.config:
            data["config"] = self.config
        return data

    def digest(self) -> str:
        """A stable hash of the definition, to tell whether a stored copy is current."""
        blob = json.dumps(self.as_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def spec_from_data(data: Any, *, source: str = "graph") -> GraphSpec:
    """Build a GraphSpec from file-format data; GraphError names what is malformed."""
    if not isinstance(data, dict):
        raise GraphError(f"{source}: a graph must be a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(f"{source}: `name` must be a non-empty string")
    nodes_in = data.get("nodes")
    edges_in = data.get("edges", [])
    if not isinstance(nodes_in, list):
        raise GraphError(f"{source}: `nodes` must be a list")
    if not isinstance(edges_in, list):
        raise GraphError(f"{source}: `edges` must be a list")
    nodes = []
    for index, raw in enumerate(nodes_in):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise GraphError(f"{source}: nodes[{index}] needs a string `id`")
        if not isinstance(raw.get("type"), str):
            raise GraphError(f"{source}: node {raw['id']!r} needs a string `type`")
        config = raw.get("config", {})
        if not isinstance(config, dict):
            raise GraphError(f"{source}: node {raw['id']!r}: `config` must be an object")
        config = dict(config)
        for key, value in config.items():
            # Every prompt (`prompt`, `fix_prompt`, ...) may be written as a list of lines.
            if (key == "prompt" or key.endswith("_prompt")) and isinstance(value, list):
                config[key] = "\n".join(str(line) for line in value)
        nodes.append(NodeSpec(id=raw["id"], type=raw["type"], config=config))
    edges = []
    for index, raw in enumerate(edges_in):
        if not isinstance(raw, dict):
            raise GraphError(f"{source}: edges[{index}] must be an object")
        src, dst = raw.get("from"), raw.get("to")
        if not isinstance(src, str) or not isinstance(dst, str):
            raise GraphError(f"{source}: edges[{index}] needs string `from` and `to`")
        condition = raw.get("condition", "") or ""
        if not isinstance(condition, str):
            raise GraphError(f"{source}: edges[{index}]: `condition` must be a string")
        edges.append(EdgeSpec(source=src, target=dst, condition=condition))
    description = data.get("description", "")
    graph_config = data.get("config", {})
    if not isinstance(graph_config, dict):
        raise GraphError(f"{source}: the graph's `config` must be an object")
    return GraphSpec(
        name=name.strip(),
        description=description if isinstance(description, str) else "",
        nodes=tuple(nodes),
        edges=tuple(edges),
        config=dict(graph_config),
    )


def cytoscape(spec: GraphSpec) -> dict[str, list[dict[str, Any]]]:
    """The graph as Cytoscape-style `{nodes, edges}` elements, for pictures."""
    return {
        "nodes": [
            {"data": {"id": node.id, "label": node.id, "type": node.type}} for node in spec.nodes
        ],
        "edges": [
            {
                "data": {
                    "id": f"e{index}-{edge.source}-{edge.target}",
                    "source": edge.source,
                    "target": edge.target,
                    "label": edge.condition,
                }
            }
            for index, edge in enumerate(spec.edges)
        ],
    }
