"""Admin forms for graphs: node types from the registry, roomy prompts, whole-graph validation."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from graphs.config import DEFAULT_DOUBLE_TEXTING, DOUBLE_TEXTING_POLICIES, GRAPH_CONFIG_KEYS
from graphs.models import Graph, GraphEdge, GraphNode
from graphs.registry import node_type_names
from graphs.spec import EdgeSpec, GraphSpec, NodeSpec
from graphs.validation import validate_spec

# static/agentsite/admin.css: the Content-Security-Policy refuses inline styles.
MONO = {"class": "mono-field"}


def _type_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in node_type_names()]


class GraphForm(forms.ModelForm):
    """A graph's own fields, with its config's `double_texting` as a choice and its
    `approval` rules as JSON.

    Each reads and writes its config key (empty: the default, the key removed); other
    config keys are kept as they are. The rules are checked with the whole graph
    (graphs.E011).
    """

    double_texting = forms.ChoiceField(
        required=False,
        choices=[("", f"default ({DEFAULT_DOUBLE_TEXTING})"),
                 *((policy, policy) for policy in DOUBLE_TEXTING_POLICIES)],
        help_text=f"Graph config `double_texting`: {GRAPH_CONFIG_KEYS['double_texting']}. "
                  "See Double texting in the README.")

    approval = forms.JSONField(
        required=False, label="Approval rules (JSON)",
        widget=forms.Textarea(attrs={"rows": 3, **MONO}),
        help_text=f"Graph config `approval`: {GRAPH_CONFIG_KEYS['approval']}, e.g. "
                  '{"tools": ["query_db"]} or {"rows_over": 100000}. Empty: no tool call '
                  "waits. See Approval in the README.")

    class Meta:
        model = Graph
        fields = ["name", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.instance.config or {}
        self.initial.setdefault("double_texting", config.get("double_texting", ""))
        self.initial.setdefault("approval", config.get("approval"))

    def clean(self) -> dict[str, Any]:
        """Write the choice into the graph's config, keeping its other keys in their order.

        It goes onto the instance here, as Django puts the model fields there after
        clean: the edge inline validates the whole graph, this config included, after
        this form (`GraphEdgeFormSet.clean` reads `instance.config`).
        """
        cleaned = super().clean()
        config = dict(self.instance.config or {})
        for key in ("double_texting", "approval"):
            if cleaned.get(key) not in (None, "", {}):
                config[key] = cleaned[key]
            else:
                config.pop(key, None)
        self.instance.config = config
        return cleaned


class GraphNodeForm(forms.ModelForm):
    """A node: id, a registered type, its prompt in a roomy text area, other config as JSON."""

    type = forms.ChoiceField(choices=_type_choices)
    prompt = forms.CharField(
        required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 12, **MONO}),
        help_text="The node's system prompt (config key `prompt`).")
    config = forms.JSONField(
        required=False, label="Other config (JSON)",
        widget=forms.Textarea(attrs={"rows": 5, **MONO}),
        help_text="temperature, model, tools, routes, other prompts…")

    class Meta:
        model = GraphNode
        fields = ["node_id", "type", "prompt", "config", "position"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = dict(self.instance.config or {}) if self.instance.pk else {}
        self.initial.setdefault("prompt", config.pop("prompt", ""))
        self.initial["config"] = config

    def clean_config(self) -> dict[str, Any]:
        """The other config must be a JSON object."""
        value = self.cleaned_data.get("config") or {}
        if not isinstance(value, dict):
            raise ValidationError("Write a JSON object, e.g. {\"temperature\": 0.2}.")
        if "prompt" in value:
            raise ValidationError("Put the prompt in the Prompt field above.")
        return value

    def clean_prompt(self) -> str:
        """Line endings as stored (`\n`): a browser sends a textarea back with CRLF."""
        return (self.cleaned_data.get("prompt") or "").replace("\r\n", "\n").replace("\r", "\n")

    def clean(self) -> dict[str, Any]:
        """Fold the prompt back into the node's config, keys in their stored order.

        Keys keep the order they had (new ones go last), so a one-line edit is a
        one-line revision diff.
        """
        cleaned = super().clean()
        config = dict(cleaned.get("config") or {})
        if cleaned.get("prompt"):
            config = {"prompt": cleaned["prompt"], **config}
        stored = list(self.instance.config or {}) if self.instance.pk else []
        cleaned["config"] = {**{key: config[key] for key in stored if key in config},
                             **{key: value for key, value in config.items()
                                if key not in stored}}
        return cleaned


class GraphEdgeFormSet(BaseInlineFormSet):
    """Edges; their clean() validates the whole graph, nodes included.

    The admin links `node_formset` before validation, so problems can be shown
    on the very field at fault, in either inline.
    """

    node_formset: BaseInlineFormSet | None = None
    graph_name: str = "graph"

    def clean(self) -> None:
        """Validate the graph the two inlines describe together."""
        super().clean()
        nodes = self.node_formset
        if nodes is None or any(form.errors for form in nodes.forms) or any(
                form.errors for form in self.forms):
            return
        node_forms = _kept(nodes.forms)
        edge_forms = _kept(self.forms)
        spec = GraphSpec(
            name=self.graph_name, description="",
            nodes=tuple(NodeSpec(f.cleaned_data["node_id"], f.cleaned_data["type"],
                                 f.cleaned_data["config"]) for f in node_forms),
            edges=tuple(EdgeSpec(f.cleaned_data["source"], f.cleaned_data["target"],
                                 f.cleaned_data.get("condition") or "") for f in edge_forms),
            # The graph being edited, its config as the graph form left it.
            config=dict(self.instance.config or {}),
        )
        problems = validate_spec(spec, node_types=node_type_names())
        general = []
        for problem in problems:
            text = f"{problem.msg} ({problem.id}). {problem.hint}"
            if problem.edge >= 0:
                edge_forms[problem.edge].add_error(problem.attr, text)
            elif problem.node:
                form = next(f for f in node_forms if f.cleaned_data["node_id"] == problem.node)
                form.add_error(problem.attr, text)
            else:
                general.append(text)
        if problems:
            raise ValidationError(
                ["The graph is not valid: see the fields marked in the nodes and edges."]
                + general)


def _kept(forms_: list[forms.Form]) -> list[forms.Form]:
    """Forms with data that are not marked for deletion."""
    return [f for f in forms_ if f.cleaned_data and not f.cleaned_data.get("DELETE")]


class GraphEdgeForm(forms.ModelForm):
    """An edge: from, to, condition."""

    class Meta:
        model = GraphEdge
        fields = ["source", "target", "condition", "position"]


class GraphImportForm(forms.Form):
    """A graph in the file format, pasted or uploaded."""

    json_text = forms.CharField(required=False, label="Graph JSON",
                                widget=forms.Textarea(attrs={"rows": 18, **MONO}))
    json_file = forms.FileField(required=False, label="…or a .json file")
    replace = forms.BooleanField(
        required=False, help_text="Replace a graph of the same name (its current version "
                                  "stays in its revisions).")

    def clean(self) -> dict[str, Any]:
        """Exactly one source of JSON."""
        cleaned = super().clean()
        upload = cleaned.get("json_file")
        if upload:
            try:
                cleaned["json_text"] = upload.read().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValidationError("The file is not UTF-8 text.") from exc
        if not (cleaned.get("json_text") or "").strip():
            raise ValidationError("Paste the graph's JSON or choose a file.")
        return cleaned
