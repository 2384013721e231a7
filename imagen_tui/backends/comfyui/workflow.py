"""ComfyUI graphs: the built-in FLUX ones, a user's own, and where a request goes in them.

A graph is ComfyUI's API format: `{node_id: {"class_type", "inputs"}}`, where
an input is a value or a link `[source_node_id, output_index]`. A `Workflow`
is a graph plus its *placement*: for each request field (prompt, negative,
seed, steps, width, height, filename prefix) the `(node id, input name)`
pairs that receive it, and the output node whose images are the result.

Built-in graphs (`graphs/split.json`, `graphs/checkpoint.json`) serve both
`flux-schnell` and `flux-dev`; the model files, steps and guidance differ.
A user's graph declares places as `node_id.input_name`, or leaves them to be
found by class type: unambiguous or an error that names the candidates.
A field with no place is *ignored* (listed by `imagen backends`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from imagen_tui.errors import ConfigError

Graph = dict[str, dict[str, Any]]
Place = tuple[str, str]  # (node id, input name)

BUILTIN_WORKFLOWS = ("flux-schnell", "flux-dev")
LAYOUTS = ("split", "checkpoint")
FIELDS = ("prompt", "negative", "seed", "steps", "width", "height", "prefix")
OUTPUT_CLASSES = ("SaveImage", "PreviewImage")

# Model inputs of loader nodes: (class, input) -> the models/ folder its file belongs in.
MODEL_FOLDERS: dict[tuple[str, str], str] = {
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
}

# Where a field is found by class type in a user's graph, when it declares no place.
_BY_CLASS: dict[str, tuple[Place, ...]] = {
    "seed": (
        ("KSampler", "seed"),
        ("KSamplerAdvanced", "noise_seed"),
        ("RandomNoise", "noise_seed"),
    ),
    "steps": (("KSampler", "steps"), ("KSamplerAdvanced", "steps"), ("BasicScheduler", "steps")),
    "width": (
        ("EmptySD3LatentImage", "width"),
        ("EmptyLatentImage", "width"),
        ("EmptyImage", "width"),
    ),
    "height": (
        ("EmptySD3LatentImage", "height"),
        ("EmptyLatentImage", "height"),
        ("EmptyImage", "height"),
    ),
    "prefix": (("SaveImage", "filename_prefix"),),
}
_TEXT_INPUTS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
}
_PASS_THROUGH = ("FluxGuidance",)  # conditioning nodes a prompt flows through unchanged
_SAMPLERS = ("KSampler", "KSamplerAdvanced", "BasicGuider", "CFGGuider")


@dataclass(frozen=True)
class Models:
    """The model files a built-in graph loads (file names as ComfyUI lists them)."""

    unet: str
    clip_l: str
    t5: str
    vae: str
    checkpoint: str
    weight_dtype: str = "default"


DEFAULT_MODELS: dict[str, Models] = {
    "flux-schnell": Models(
        unet="flux1-schnell.safetensors",
        clip_l="clip_l.safetensors",
        t5="t5xxl_fp8_e4m3fn.safetensors",
        vae="ae.safetensors",
        checkpoint="flux1-schnell-fp8.safetensors",
    ),
    "flux-dev": Models(
        unet="flux1-dev.safetensors",
        clip_l="clip_l.safetensors",
        t5="t5xxl_fp8_e4m3fn.safetensors",
        vae="ae.safetensors",
        checkpoint="flux1-dev-fp8.safetensors",
    ),
}
DEFAULT_STEPS = {"flux-schnell": 4, "flux-dev": 20}
GUIDANCE = {"flux-schnell": 3.5, "flux-dev": 3.5}


@dataclass(frozen=True)
class ModelFile:
    """A model file a graph loads: where it is named and the folder it belongs in."""

    node: str
    class_type: str
    input: str
    filename: str
    folder: str


@dataclass(frozen=True)
class Workflow:
    """A graph with its placement; `fill` makes the graph for one request."""

    name: str  # "flux-schnell (split)" or the user's file name
    graph: Graph
    places: Mapping[str, tuple[Place, ...]]
    output: str  # the output node's id
    default_steps: int | None = None
    model_files: tuple[ModelFile, ...] = field(default=())

    @property
    def ignored(self) -> list[str]:
        """Request fields this graph has no place for."""
        return [name for name in FIELDS if not self.places.get(name)]

    def fill(self, values: Mapping[str, Any]) -> Graph:
        """A copy of the graph with each given field's value at its places."""
        graph = copy.deepcopy(self.graph)
        for name, value in values.items():
            for node, input_name in self.places.get(name, ()):
                graph[node]["inputs"][input_name] = value
        return graph


def _read_builtin(layout: str) -> Graph:
    text = resources.files(__package__).joinpath("graphs", f"{layout}.json").read_text("utf-8")
    graph: Graph = json.loads(text)
    return graph


def builtin(workflow: str, layout: str, models: Models, steps: int | None = None) -> Workflow:
    """The built-in FLUX graph `workflow` in `layout`, loading `models`."""
    graph = _read_builtin(layout)
    if layout == "split":
        graph["1"]["inputs"].update(unet_name=models.unet, weight_dtype=models.weight_dtype)
        graph["2"]["inputs"].update(clip_name1=models.clip_l, clip_name2=models.t5)
        graph["3"]["inputs"]["vae_name"] = models.vae
    else:
        graph["1"]["inputs"]["ckpt_name"] = models.checkpoint
    graph["10"]["inputs"]["guidance"] = GUIDANCE[workflow]
    places: dict[str, tuple[Place, ...]] = {
        "prompt": (("4", "text"),),
        "negative": (("5", "text"),),
        "seed": (("7", "seed"),),
        "steps": (("7", "steps"),),
        "width": (("6", "width"),),
        "height": (("6", "height"),),
        "prefix": (("9", "filename_prefix"),),
    }
    return Workflow(
        name=f"{workflow} ({layout})",
        graph=graph,
        places=places,
        output="9",
        default_steps=steps or DEFAULT_STEPS[workflow],
        model_files=model_files(graph),
    )


def model_files(graph: Graph) -> tuple[ModelFile, ...]:
    """Every model file the graph's loader nodes name, with its folder."""
    found = []
    for node, spec in graph.items():
        class_type = spec.get("class_type", "")
        for input_name, value in spec.get("inputs", {}).items():
            folder = MODEL_FOLDERS.get((class_type, input_name))
            if folder and isinstance(value, str):
                found.append(ModelFile(node, class_type, input_name, value, folder))
    return tuple(found)


def load_user(
    path: str | Path,
    declared: Mapping[str, str | None],
    output: str | None = None,
    steps: int | None = None,
) -> Workflow:
    """A user's API-format graph, with `declared` places (`field -> "node.input"`).

    Undeclared fields are found by class type; raises ConfigError naming what
    is missing, unreadable or ambiguous.
    """
    where = str(path)
    try:
        graph_any = json.loads(Path(path).expanduser().read_text("utf-8"))
    except OSError as error:
        raise ConfigError(
            f"comfyui workflow {where}: cannot read it ({error.strerror or error})"
        ) from None
    except ValueError as error:
        raise ConfigError(f"comfyui workflow {where}: not JSON ({error})") from None
    return from_graph(graph_any, where, declared, output, steps)


def from_graph(
    graph_any: Any,
    where: str,
    declared: Mapping[str, str | None],
    output: str | None = None,
    steps: int | None = None,
) -> Workflow:
    """`load_user` for a graph already parsed (`where` names it in errors)."""
    graph = _checked_graph(graph_any, where)
    places: dict[str, tuple[Place, ...]] = {}
    for name in FIELDS:
        spec = declared.get(name)
        if spec:
            places[name] = tuple(
                _declared_place(graph, where, name, part) for part in spec.split(",")
            )
        else:
            places[name] = _found(graph, where, name)
    return Workflow(
        name=Path(where).name,
        graph=graph,
        places=places,
        output=_output_node(graph, where, output),
        default_steps=steps,
        model_files=model_files(graph),
    )


def _checked_graph(graph: Any, where: str) -> Graph:
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise ConfigError(
            f"comfyui workflow {where}: this is the web UI's format; export it with "
            "'Export (API)' (or 'Save (API Format)') instead"
        )
    if not isinstance(graph, dict) or not graph:
        raise ConfigError(f"comfyui workflow {where}: expected an API-format graph (an object)")
    for node, spec in graph.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("class_type"), str):
            raise ConfigError(f"comfyui workflow {where}: node {node} has no class_type")
        if not isinstance(spec.setdefault("inputs", {}), dict):
            raise ConfigError(f"comfyui workflow {where}: node {node}: inputs is not an object")
    return graph


def _declared_place(graph: Graph, where: str, name: str, spec: str) -> Place:
    node, _, input_name = spec.strip().partition(".")
    if not node or not input_name:
        raise ConfigError(
            f"comfyui workflow {where}: {name}_at: expected node_id.input_name, got {spec!r}"
        )
    if node not in graph:
        raise ConfigError(f"comfyui workflow {where}: {name}_at: there is no node {node}")
    current = graph[node]["inputs"].get(input_name)
    if isinstance(current, list):
        raise ConfigError(
            f"comfyui workflow {where}: {name}_at: input {input_name} of node {node} "
            f"({graph[node]['class_type']}) is linked from node {current[0]}, not a value"
        )
    return (node, input_name)


def _nodes_of(graph: Graph, classes: Iterable[str]) -> list[str]:
    wanted = set(classes)
    return [node for node, spec in graph.items() if spec["class_type"] in wanted]


def _found(graph: Graph, where: str, name: str) -> tuple[Place, ...]:
    if name in ("prompt", "negative"):
        return _text_place(graph, where, name)
    candidates = [
        (node, input_name)
        for class_type, input_name in _BY_CLASS[name]
        for node in _nodes_of(graph, [class_type])
        if not isinstance(graph[node]["inputs"].get(input_name), list)
    ]
    if len(candidates) > 1:
        listed = ", ".join(f"{n}.{i} ({graph[n]['class_type']})" for n, i in candidates)
        raise ConfigError(
            f"comfyui workflow {where}: more than one place for {name} ({listed}); "
            f"say which with {name}_at: node_id.input_name"
        )
    return tuple(candidates)


def _text_place(graph: Graph, where: str, name: str) -> tuple[Place, ...]:
    """The text encoder feeding the sampler's positive (prompt) or negative input."""
    encoders = _nodes_of(graph, _TEXT_INPUTS)
    link_input = "positive" if name == "prompt" else "negative"
    samplers = [node for node in _nodes_of(graph, _SAMPLERS) if link_input in graph[node]["inputs"]]
    if name == "prompt":
        samplers += [n for n in _nodes_of(graph, ["BasicGuider"]) if n not in samplers]
    found: set[str] = set()
    for sampler in samplers:
        key = link_input if link_input in graph[sampler]["inputs"] else "conditioning"
        encoder = _trace_encoder(graph, graph[sampler]["inputs"].get(key))
        if encoder is not None:
            found.add(encoder)
    if not found and name == "prompt" and len(encoders) == 1:
        found.add(encoders[0])
    if len(found) > 1:
        listed = ", ".join(sorted(found, key=_node_order))
        raise ConfigError(
            f"comfyui workflow {where}: more than one place for {name} (text nodes {listed}); "
            f"say which with {name}_at: node_id.input_name"
        )
    if not found and name == "prompt" and len(encoders) > 1:
        listed = ", ".join(sorted(encoders, key=_node_order))
        raise ConfigError(
            f"comfyui workflow {where}: cannot tell which text node takes the prompt "
            f"({listed}); say which with prompt_at: node_id.input_name"
        )
    return tuple(
        (node, input_name)
        for node in sorted(found, key=_node_order)
        for input_name in _TEXT_INPUTS[graph[node]["class_type"]]
        if not isinstance(graph[node]["inputs"].get(input_name), list)
    )


def _trace_encoder(graph: Graph, link: Any, depth: int = 0) -> str | None:
    """Follow a conditioning link up to its text encoder, through FluxGuidance."""
    if not isinstance(link, list) or not link or depth > 20:
        return None
    node = str(link[0])
    spec = graph.get(node)
    if spec is None:
        return None
    if spec["class_type"] in _TEXT_INPUTS:
        return node
    if spec["class_type"] not in _PASS_THROUGH:  # e.g. ConditioningZeroOut: no text here
        return None
    return _trace_encoder(graph, spec["inputs"].get("conditioning"), depth + 1)


def _node_order(node: str) -> tuple[int, str]:
    return (int(node), node) if node.isdigit() else (1 << 62, node)


def _output_node(graph: Graph, where: str, declared: str | None) -> str:
    if declared:
        if declared not in graph:
            raise ConfigError(f"comfyui workflow {where}: output_node: there is no node {declared}")
        return declared
    outputs = _nodes_of(graph, OUTPUT_CLASSES)
    if not outputs:
        raise ConfigError(
            f"comfyui workflow {where}: no output node; add a SaveImage or PreviewImage node"
        )
    saves = _nodes_of(graph, ["SaveImage"])
    candidates = saves or outputs
    if len(candidates) > 1:
        raise ConfigError(
            f"comfyui workflow {where}: more than one output node "
            f"({', '.join(sorted(candidates, key=_node_order))}); say which with output_node"
        )
    return candidates[0]
