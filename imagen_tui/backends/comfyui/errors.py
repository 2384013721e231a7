"""ComfyUI's error reports turned into one line a user can act on.

- A 400 from `POST /prompt` (validation): each node error names the node,
  its class, the input and the problem; a model file that is not installed
  names the file, the `models/` folder it belongs in and what is there.
- `execution_error` (a node raised at run time): the exception type and
  message, never the traceback or the inputs' tensors.
- Out of GPU memory: said plainly, as `GpuOutOfMemory` (the GPU is shared
  with other model servers; the worker hands the job back without using up
  an attempt and waits for memory, see jobs/gpu.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagen_tui.backends.comfyui.workflow import MODEL_FOLDERS
from imagen_tui.errors import GenerationError, GpuOutOfMemory
from imagen_tui.text import one_line

MAX_CHARS = 1200  # one error line at most (three missing files fit)
_NOT_FILES = frozenset({"pixel_space"})  # VAELoader's built-in choice, not a file
_OOM_MARKERS = ("outofmemoryerror", "out of memory", "allocation on device")


def validation_error(prefix: str, body: Mapping[str, Any]) -> GenerationError:
    """A 400 from POST /prompt: what failed validation, node by node."""
    problems: list[str] = []
    node_errors = body.get("node_errors")
    if isinstance(node_errors, Mapping):
        for node, report in sorted(node_errors.items(), key=lambda item: _order(item[0])):
            if not isinstance(report, Mapping):
                continue
            class_type = str(report.get("class_type", "?"))
            for error in report.get("errors") or ():
                if isinstance(error, Mapping):
                    problems.append(_node_problem(str(node), class_type, error))
    error = body.get("error")
    if not problems and isinstance(error, Mapping):
        message = str(error.get("message") or error.get("type") or "invalid graph")
        details = str(error.get("details") or "")
        problems.append(f"{message}: {details}" if details else message)
    if not problems:
        problems.append("the server rejected the graph without saying why")
    return GenerationError(one_line(f"{prefix}: {'; '.join(problems)}", MAX_CHARS))


def _node_problem(node: str, class_type: str, error: Mapping[str, Any]) -> str:
    extra = error.get("extra_info") if isinstance(error.get("extra_info"), Mapping) else {}
    assert isinstance(extra, Mapping)
    input_name = str(extra.get("input_name") or "")
    where = f"node {node} ({class_type})" + (f" input {input_name}" if input_name else "")
    folder = MODEL_FOLDERS.get((class_type, input_name))
    if error.get("type") == "value_not_in_list" and folder:
        received = extra.get("received_value")
        choices = extra.get("input_config")
        installed: list[str] = []
        if isinstance(choices, list) and choices and isinstance(choices[0], list):
            installed = [str(c) for c in choices[0] if str(c) not in _NOT_FILES]
        there = ", ".join(installed) if installed else "nothing"
        return (
            f"{where}: model file {received!r} is not installed; put it in "
            f"ComfyUI/models/{folder}/ (installed there: {there})"
        )
    message = str(error.get("message") or error.get("type") or "invalid")
    details = str(error.get("details") or "")
    return f"{where}: {message}" + (f" ({details})" if details else "")


def is_out_of_memory(report: Mapping[str, Any]) -> bool:
    text = f"{report.get('exception_type', '')} {report.get('exception_message', '')}".lower()
    return any(marker in text for marker in _OOM_MARKERS)


def execution_error(prefix: str, report: Mapping[str, Any]) -> GenerationError:
    """An `execution_error` event (or its copy in /history): one line, no traceback."""
    node = report.get("node_id", "?")
    node_type = report.get("node_type", "?")
    kind = str(report.get("exception_type") or "error").rsplit(".", 1)[-1]
    message = str(report.get("exception_message") or "").strip()
    if is_out_of_memory(report):
        first = message.splitlines()[0] if message else ""
        return GpuOutOfMemory(
            one_line(
                f"{prefix}: the GPU ran out of memory in node {node} ({node_type}): {kind}: "
                f"{first}; transient, tried again when memory is free (the GPU is shared "
                "with other model servers)",
                MAX_CHARS,
            )
        )
    hint = ""
    if kind == "SafetensorError":
        hint = " (the model file looks corrupt or incomplete; download it again)"
    return GenerationError(
        one_line(f"{prefix}: node {node} ({node_type}) failed: {kind}: {message}{hint}", MAX_CHARS)
    )


def _order(node: Any) -> tuple[int, str]:
    text = str(node)
    return (int(text), text) if text.isdigit() else (1 << 62, text)
