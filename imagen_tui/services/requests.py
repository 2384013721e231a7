"""Requests: the checks `imagen submit` and the TUI's form run before a series is queued.

A style or backend this machine's config lacks is a field-tagged *warning*
(the worker's config decides); everything else is refused with an
`InputError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagen_tui.backends.registry import check_options
from imagen_tui.cmdline import whole_number
from imagen_tui.core.prompt import pick_style
from imagen_tui.core.sizes import parse_size
from imagen_tui.core.spec import RequestSpec, try_seeds
from imagen_tui.core.workbench import Workbench
from imagen_tui.errors import InputError


@dataclass(frozen=True)
class Submission:
    """A series queued: its id, its jobs (in try order), the checked spec it was
    queued with, and what the local config could not vouch for."""

    series_id: int
    job_ids: tuple[int, ...]
    spec: RequestSpec
    warnings: tuple[InputError, ...] = ()

    def seeds(self) -> list[int | None]:
        """Each try's seed as queued (None: the try picks its own when it renders)."""
        return try_seeds(self.spec.seed, len(self.job_ids))


def check_submission(
    workbench: Workbench, spec: RequestSpec, count: int
) -> tuple[RequestSpec, list[InputError]]:
    """The checked spec and the warnings for a series of `count` tries; InputError if bad.

    The worker that renders the series applies its own config, which may know
    styles and backends this machine does not. So a style or backend this
    config lacks is a *warning*, and the series is queued: a job for a backend
    waits for a worker that has it; a style the worker lacks too fails there. Everything else is
    checked here and refused. The checked spec names its backend instance (the
    config's default_backend when none was chosen).
    """
    spec = spec.checked()
    try_seeds(spec.seed, count)
    # The job names its instance: the submitter's default when none was chosen,
    # so only a worker that has it claims the job (docs/worker.md, Routing).
    spec = spec._replace(backend=spec.backend or workbench.config.default_backend)
    warnings: list[InputError] = []
    try:
        pick_style(workbench.styles, spec.style)
    except InputError as error:
        warnings.append(_worker_decides(error))
    try:
        name, block = workbench.backend_block(spec.backend)
    except InputError as error:
        warnings.append(_worker_decides(error))
    else:
        # Options are job input a worker pays for: refused here, not only on the worker.
        check_options(block, spec.options)
        status = workbench.backend_status(name)
        if status != "ok":
            warnings.append(_worker_decides(InputError("backend", f"{name} is {status} here")))
    return spec, warnings


def spec_from_form(
    *,
    prompt: str,
    negative: str = "",
    backend: str | None = None,
    style: str | None = None,
    size: str = "",
    steps: str = "",
    seed: str = "",
) -> RequestSpec:
    """The request a form's text fields describe (blank: the default), checked;
    InputError naming the first bad field, in the CLI's words."""
    width, height = parse_size(size) if size.strip() else (None, None)
    return RequestSpec(
        prompt=prompt,
        negative_prompt=negative,
        style=style or None,
        width=width,
        height=height,
        steps=_whole_number("steps", steps),
        seed=_whole_number("seed", seed),
        backend=backend or None,
    ).checked()


def _whole_number(field_name: str, text: str) -> int | None:
    if not text.strip():
        return None
    try:
        return whole_number(text)
    except ValueError as error:
        raise InputError(field_name, str(error)) from None


def _worker_decides(error: InputError) -> InputError:
    if error.field == "backend":
        why = "it waits for a worker that has this backend"
    else:
        why = "the worker's config decides, and the job fails there if it lacks it too"
    return InputError(error.field, f"{error.message} (queued anyway: {why})")
