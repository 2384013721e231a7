"""What `imagen backends` says about a ComfyUI instance, one short line per fact.

Reachable or not (naming the URL), the ComfyUI version, each GPU with its
free VRAM (`/system_stats`), which configured model files are installed
(the loader nodes' choice lists in `/object_info/{class}`: the same check
ComfyUI's validation makes), which request fields the workflow ignores, and
whether it sends live previews (its `--preview-method` in `/system_stats`,
and what this machine's workers saw on their last run there), or how to turn
them on.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from typing import Any

import httpx

from imagen_tui import __version__
from imagen_tui.backends.comfyui import seen
from imagen_tui.backends.comfyui.workflow import ModelFile, Workflow
from imagen_tui.backends.http import HttpError, mask, read_token
from imagen_tui.backends.registry import Probe
from imagen_tui.config.secrets import redact_text, redact_url
from imagen_tui.errors import ImagenError
from imagen_tui.text import one_line

PROBE_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
GIB = 2**30


MISSING_MODEL = "missing model: "


def probe(block: Mapping[str, Any]) -> Probe:
    """Facts about the instance; its problem is `missing models` when a model file
    the workflow names is not installed, `unreachable` when the server does not answer."""
    from imagen_tui.backends.comfyui import DEFAULT_URL, load_workflow

    lines: list[str] = []
    problem: str | None = None
    workflow: Workflow | None = None
    try:
        workflow = load_workflow(block)
    except ImagenError as error:
        lines.append(f"workflow: {error}")
    else:
        lines.append(f"workflow: {workflow.name}")
        if workflow.ignored:
            lines.append(f"ignores: {', '.join(workflow.ignored)} (no place in the workflow)")
    url = str(block.get("url") or DEFAULT_URL).rstrip("/")
    shown = redact_url(url)
    headers = {"User-Agent": f"imagen-tui/{__version__}"}
    token: str | None = None
    if block.get("auth_env") and os.environ.get(block["auth_env"]):
        try:
            token = read_token("probe", block["auth_env"], header_value=True)
        except HttpError as error:
            lines.append(str(error))
            return Probe(tuple(lines), "not configured")
        headers[block.get("auth_header") or "Authorization"] = token
    try:
        with httpx.Client(base_url=url, timeout=PROBE_TIMEOUT, headers=headers) as client:
            stats = client.get("/system_stats")
            stats.raise_for_status()
            lines.extend(_stats_lines(shown, stats.json()))
            lines.append(preview_line(url, stats.json()))
            if workflow is not None and workflow.model_files:
                found = _model_lines(client, workflow.model_files)
                lines.extend(found)
                if any(line.startswith(MISSING_MODEL) for line in found):
                    problem = "missing models"
    except (httpx.HTTPError, ValueError) as error:
        lines.append(
            f"unreachable: {shown} "
            f"({one_line(mask(redact_text(f'{type(error).__name__}: {error}', url), token), 160)})"
        )
        problem = "unreachable"
    return Probe(tuple(lines), problem)


def _stats_lines(url: str, stats: Any) -> list[str]:
    system = stats.get("system", {}) if isinstance(stats, Mapping) else {}
    version = system.get("comfyui_version", "unknown version")
    lines = [f"reachable: {url}, ComfyUI {version}"]
    for device in stats.get("devices", []) if isinstance(stats, Mapping) else []:
        try:
            free, total = device["vram_free"] / GIB, device["vram_total"] / GIB
        except (KeyError, TypeError):
            continue
        name = one_line(str(device.get("name")), 80)
        lines.append(f"device: {name}: {free:.1f} GiB free of {total:.1f} GiB")
    return lines


PREVIEW_HINT = "start ComfyUI with --preview-method auto to watch renders appear"


def preview_line(url: str, stats: Any) -> str:
    """`previews: on (...)` or `previews: off (...)`, with how to turn them on."""
    system = stats.get("system", {}) if isinstance(stats, Mapping) else {}
    argv = system.get("argv") if isinstance(system, Mapping) else None
    method: str | None = None
    if isinstance(argv, list):
        for flag, value in itertools.pairwise([*argv, ""]):
            if not isinstance(flag, str) or not isinstance(value, str):
                continue
            if flag == "--preview-method":
                method = one_line(value, 20)
            elif flag.startswith("--preview-method="):
                method = one_line(flag.partition("=")[2], 20)
    last = seen.last_run(url)
    why = []
    if method is not None:
        why.append(f"--preview-method {method}")
    if last is not None:
        when = last.at.astimezone().strftime("%Y-%m-%d %H:%M")
        why.append(f"{'seen' if last.previews else 'none'} on the last run, {when}")
    on = (method is not None and method != "none") or (last is not None and last.previews)
    if not on:
        why.append(PREVIEW_HINT)
    return f"previews: {'on' if on else 'off'} ({'; '.join(why)})"


def _model_lines(client: httpx.Client, files: tuple[ModelFile, ...]) -> list[str]:
    installed: dict[tuple[str, str], list[str]] = {}
    missing = []
    for model in files:
        key = (model.class_type, model.input)
        if key not in installed:
            installed[key] = _choices(client, model.class_type, model.input)
        if model.filename not in installed[key]:
            missing.append(f"{model.filename} (models/{model.folder})")
    if not missing:
        return [f"models: all {len(files)} installed"]
    return [f"{MISSING_MODEL}{name}" for name in missing]


def _choices(client: httpx.Client, class_type: str, input_name: str) -> list[str]:
    response = client.get(f"/object_info/{class_type}")
    response.raise_for_status()
    info = response.json().get(class_type, {}).get("input", {})
    for group in ("required", "optional"):
        spec = info.get(group, {}).get(input_name)
        if isinstance(spec, list) and spec and isinstance(spec[0], list):
            return [str(choice) for choice in spec[0]]
    return []
