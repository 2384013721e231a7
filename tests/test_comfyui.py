"""The comfyui backend against a fake ComfyUI that replays recorded transcripts."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagen_tui.backends import registry
from imagen_tui.backends.base import Request, Result
from imagen_tui.backends.comfyui import COMFYUI_TYPE, ComfyBackend, load_workflow
from imagen_tui.errors import ConfigError, GenerationError
from tests.comfyui_fake import FIXTURES, FakeComfy
from tests.helpers import fractions_into

PNG = (FIXTURES / "imagen_00001_.png").read_bytes()
FLUX_FILES = {
    "diffusion_models": ["flux1-schnell.safetensors"],
    "text_encoders": ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"],
    "vae": ["ae.safetensors"],
}


@pytest.fixture
def fake() -> Iterator[FakeComfy]:
    server = FakeComfy().start()
    yield server
    server.stop()


def block(url: str, **overrides: Any) -> dict[str, Any]:
    return registry.validate_block("flux", {"type": "comfyui", "url": url, **overrides})


def backend(fake: FakeComfy, **overrides: Any) -> ComfyBackend:
    # Bounded: a broken adapter fails the test within seconds instead of hanging it.
    overrides = {"queue_timeout": 20.0, "run_timeout": 20.0, **overrides}
    made = registry.create("flux", block(fake.url, **overrides))
    assert isinstance(made, ComfyBackend)
    return made


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def once(made: ComfyBackend, request: Request | None = None, progress: Any = None) -> Result:
    try:
        return await made.generate(
            request or Request(prompt="a red fox in snow", seed=42), progress
        )
    finally:
        await made.aclose()


# ------------------------------------------------------------------ success


def test_success_posts_the_filled_graph_over_an_open_socket_and_returns_the_image(fake):
    result = run(
        once(
            backend(fake),
            Request(
                prompt="a red fox", negative_prompt="blur", width=768, height=512, steps=3, seed=7
            ),
        )
    )
    assert result.image == PNG and result.mime_type == "image/png"
    assert (result.seed, result.steps, result.model) == (7, 3, "flux-schnell")
    (body,) = fake.called("POST", "/prompt")
    graph = body["prompt"]
    assert graph["4"]["inputs"]["text"] == "a red fox"
    assert graph["5"]["inputs"]["text"] == "blur"
    assert (graph["7"]["inputs"]["seed"], graph["7"]["inputs"]["steps"]) == (7, 3)
    assert (graph["6"]["inputs"]["width"], graph["6"]["inputs"]["height"]) == (768, 512)
    assert graph["1"]["inputs"]["unet_name"] == "flux1-schnell.safetensors"
    # The socket was open (same clientId) before the prompt was posted, with our own prompt_id.
    kinds = [(m, p) for m, p, _ in fake.calls]
    assert kinds.index(("GET", "/ws")) < kinds.index(("POST", "/prompt"))
    (ws_query,) = fake.called("GET", "/ws")
    assert body["client_id"] == ws_query["clientId"]
    assert result.extra["comfyui_prompt_id"] == body["prompt_id"]
    assert fake.called("GET", f"/history/{body['prompt_id']}")


def test_without_a_seed_one_is_chosen_sent_and_recorded(fake):
    result = run(once(backend(fake), Request(prompt="x")))
    (graph,) = fake.posted_graphs()
    assert graph["7"]["inputs"]["seed"] == result.seed


def test_flux_dev_and_checkpoint_layout_use_their_files_and_steps(fake):
    result = run(
        once(backend(fake, workflow="flux-dev", layout="checkpoint"), Request(prompt="x", seed=1))
    )
    (graph,) = fake.posted_graphs()
    assert graph["1"] == {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "flux1-dev-fp8.safetensors"},
        "_meta": {"title": "Load Checkpoint"},
    }
    assert result.steps == 20 and result.model == "flux-dev"


def test_one_session_is_reused_across_jobs(fake):
    async def scenario() -> None:
        made = backend(fake)
        try:
            for seed in (1, 2, 3):
                await made.generate(Request(prompt="x", seed=seed))
        finally:
            await made.aclose()

    run(scenario())
    assert fake.ws_connects == 1
    assert len(fake.called("POST", "/prompt")) == 3


def test_a_cached_rerun_of_the_identical_graph_still_yields_the_image(fake):
    async def scenario() -> tuple[Result, Result]:
        made = backend(fake)
        try:
            return (
                await made.generate(Request(prompt="x", seed=5)),
                await made.generate(Request(prompt="x", seed=5)),
            )
        finally:
            await made.aclose()

    first, second = run(scenario())
    assert first.image == second.image == PNG
    assert len(fake.files) == 1  # served from the cache: no new file on the server


# ------------------------------------------------------------------ progress


def test_sampler_steps_reach_the_progress_callback(fake):
    fake.scenario = "progress"
    seen: list[float] = []
    run(once(backend(fake), Request(prompt="x", seed=1, steps=4), seen.append))
    assert seen == [0.25, 0.5, 0.75, 1.0]


def test_one_backend_runs_two_jobs_at_once_each_with_its_own_progress(fake):
    fake.scenario = "progress"
    first: list[float] = []
    second: list[float] = []

    async def scenario() -> list[Result]:
        made = backend(fake)
        try:
            return list(
                await asyncio.gather(
                    made.generate(Request(prompt="x", seed=1, steps=2), fractions_into(first)),
                    made.generate(Request(prompt="y", seed=2, steps=4), fractions_into(second)),
                )
            )
        finally:
            await made.aclose()

    results = run(scenario())
    assert [r.seed for r in results] == [1, 2] and all(r.image == PNG for r in results)
    assert (first, second) == ([0.5, 1.0], [0.25, 0.5, 0.75, 1.0])
    assert fake.ws_connects == 1  # one socket for both


def test_frames_of_other_prompts_are_ignored(fake):
    """Another client's progress and interruption on the same server change nothing."""
    fake.scenario = "progress"
    seen: list[float] = []

    async def scenario() -> None:
        a, b = backend(fake), backend(fake)
        try:
            await asyncio.gather(
                a.generate(Request(prompt="x", seed=1, steps=2), fractions_into(seen)),
                b.generate(Request(prompt="y", seed=2, steps=5)),
            )
        finally:
            await a.aclose()
            await b.aclose()

    run(scenario())
    assert seen == [0.5, 1.0]


# ------------------------------------------------------------------ errors


def test_missing_model_files_name_the_file_the_folder_and_what_is_there(fake):
    fake.installed = {
        "diffusion_models": ["flux1-dev.safetensors"],
        "text_encoders": ["clip_l.safetensors"],
        "vae": ["ae.safetensors"],
    }
    with pytest.raises(GenerationError) as caught:
        run(once(backend(fake)))
    message = str(caught.value)
    assert "\n" not in message and not caught.value.transient
    assert (
        "node 1 (UNETLoader) input unet_name: model file 'flux1-schnell.safetensors' is not "
        "installed; put it in ComfyUI/models/diffusion_models/ "
        "(installed there: flux1-dev.safetensors)"
    ) in message
    assert (
        "node 2 (DualCLIPLoader) input clip_name2: model file 't5xxl_fp8_e4m3fn.safetensors'"
        in message
    )
    assert "ae.safetensors" not in message  # installed: not reported


def test_with_every_flux_file_installed_it_validates_and_the_probe_says_so(fake):
    fake.installed = FLUX_FILES
    assert run(once(backend(fake))).image == PNG
    probed = registry.details(block(fake.url))
    assert "models: all 4 installed" in probed.lines
    assert not any("missing" in line for line in probed.lines) and probed.problem is None


def test_the_recorded_400_for_a_flux_graph_without_models_reads_as_one_line():
    from imagen_tui.backends.comfyui.errors import validation_error

    body = json.loads((FIXTURES / "prompt_invalid.json").read_text())[
        "flux_schnell_models_not_installed"
    ]["response"]["json"]
    message = str(validation_error("comfyui flux: invalid graph", body))
    assert (
        "node 3 (VAELoader) input vae_name: model file 'ae.safetensors' is not installed; "
        "put it in ComfyUI/models/vae/ (installed there: nothing)" in message
    )


def test_a_graph_without_output_is_refused_by_config_not_sent(fake, tmp_path):
    path = tmp_path / "w.json"
    graph = json.loads((FIXTURES / "prompt_ok.json").read_text())["request"]["json"]["prompt"]
    del graph["2"]
    path.write_text(json.dumps(graph))
    with pytest.raises(
        GenerationError, match="no output node; add a SaveImage or PreviewImage"
    ) as caught:
        run(once(backend(fake, workflow=str(path))))
    assert not caught.value.transient  # the worker fails the job: the file will not change
    assert not fake.called("POST", "/prompt")


def test_execution_error_gives_type_and_message_without_traceback(fake):
    fake.scenario = "exec_error"
    with pytest.raises(GenerationError) as caught:
        run(once(backend(fake)))
    assert str(caught.value) == (
        "comfyui flux: node 2 (ImageToMask) failed: IndexError: index 3 is out of bounds "
        "for dimension 3 with size 3"
    )
    assert not caught.value.transient


def test_the_recorded_corrupt_model_error_says_so():
    from imagen_tui.backends.comfyui.errors import execution_error

    lines = (FIXTURES / "ws_flux_corrupt_model.jsonl").read_text().splitlines()
    report = next(json.loads(line)["text"]["data"] for line in lines if '"execution_error"' in line)
    message = str(execution_error("comfyui flux", report))
    assert message.startswith(
        "comfyui flux: node 3 (VAELoader) failed: SafetensorError: Error while deserializing header"
    )
    assert "corrupt" in message and "File" not in message


def test_out_of_memory_is_transient_and_says_so(fake):
    fake.scenario = "oom"
    with pytest.raises(GenerationError) as caught:
        run(once(backend(fake)))
    assert caught.value.transient
    assert "the GPU ran out of memory in node 7 (KSampler)" in str(caught.value)
    assert "TIPS" not in str(caught.value)


def test_an_unreachable_server_names_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nobody listens there
    made = registry.create("flux", block(f"http://127.0.0.1:{port}"))
    with pytest.raises(GenerationError) as caught:
        run(once(made))  # type: ignore[arg-type]
    assert f"cannot reach ComfyUI at http://127.0.0.1:{port} (connection refused)" in str(
        caught.value
    )
    assert caught.value.transient


# ------------------------------------------------------------------ timeouts and cancel


def test_a_run_timeout_interrupts_the_prompt_on_the_server_first(fake):
    fake.scenario = "hold"
    with pytest.raises(
        GenerationError, match=r"took longer than run_timeout \(0.3 s\); interrupted"
    ) as caught:
        run(once(backend(fake, run_timeout=0.3)))
    assert caught.value.transient
    (posted,) = fake.called("POST", "/prompt")
    assert fake.called("POST", "/interrupt") == [{"prompt_id": posted["prompt_id"]}]
    assert fake.running_id is None  # the fake's run ended: it was interrupted


def test_a_queue_timeout_removes_the_prompt_from_the_queue(fake):
    other = fake.occupy()
    with pytest.raises(GenerationError, match=r"did not start within queue_timeout \(0.3 s"):
        run(once(backend(fake, queue_timeout=0.3)))
    (posted,) = fake.called("POST", "/prompt")
    assert fake.called("POST", "/queue") == [{"delete": [posted["prompt_id"]]}]
    assert fake.pending_ids == [] and fake.running_id == other  # the other client's run goes on
    fake.release(other)


def _cancel_when(fake: FakeComfy, ready: Any) -> tuple[str, float]:
    """Generate; once `ready(prompt_id)` holds, cancel the task. Returns the prompt id and
    the seconds from cancel() until the server had the prompt out of its queue."""

    async def scenario() -> tuple[str, float]:
        made = backend(fake)
        try:
            task = asyncio.create_task(made.generate(Request(prompt="x", seed=1)))
            await asyncio.to_thread(
                fake.wait_for, lambda: bool(fake.calls and fake.called("POST", "/prompt"))
            )
            prompt_id = fake.called("POST", "/prompt")[0]["prompt_id"]
            await asyncio.to_thread(fake.wait_for, lambda: ready(prompt_id))
            cancelled_at = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.to_thread(
                fake.wait_for,
                lambda: prompt_id not in fake.pending_ids and fake.running_id != prompt_id,
            )
            return prompt_id, time.monotonic() - cancelled_at
        finally:
            await made.aclose()

    result: tuple[str, float] = run(scenario())
    return result


def test_cancel_while_pending_deletes_the_prompt_from_the_queue(fake):
    other = fake.occupy()
    prompt_id, seconds = _cancel_when(fake, lambda pid: pid in fake.pending_ids)
    assert {"delete": [prompt_id]} in fake.called("POST", "/queue")
    assert seconds < 1.0
    assert fake.running_id == other and prompt_id not in fake.history  # it never ran
    fake.release(other)


def test_cancel_while_running_interrupts_it(fake):
    fake.scenario = "hold"
    prompt_id, seconds = _cancel_when(fake, lambda pid: fake.running_id == pid)
    assert {"prompt_id": prompt_id} in fake.called("POST", "/interrupt")
    assert seconds < 1.0
    assert fake.history[prompt_id]["status"]["status_str"] == "error"
    assert not fake.files


# ------------------------------------------------------------------ a dropped socket


def test_a_socket_drop_mid_run_loses_nothing_and_the_next_job_reconnects(fake):
    fake.scenario = "drop"

    async def scenario() -> tuple[Result, Result]:
        made = backend(fake)
        try:
            first = await made.generate(Request(prompt="x", seed=1))
            fake.scenario = "ok"
            second = await made.generate(Request(prompt="x", seed=2))
            return first, second
        finally:
            await made.aclose()

    first, second = run(scenario())
    assert first.image == PNG and second.image == PNG
    refused = [q for q in fake.called("GET", "/ws")]
    assert len(refused) >= 2  # it tried to reconnect while the server refused
    first_id = fake.called("POST", "/prompt")[0]["prompt_id"]
    assert len(fake.called("GET", f"/history/{first_id}")) >= 1


def test_a_prompt_that_starts_while_the_socket_is_down_is_not_timed_out_as_queued(fake):
    other = fake.occupy()
    fake.scenario, fake.step_delay = "progress", 0.25  # 8 steps: 2 s, past the queue timeout

    async def scenario() -> Result:
        made = backend(fake, queue_timeout=0.5)
        try:
            task = asyncio.create_task(made.generate(Request(prompt="x", seed=1, steps=8)))
            await asyncio.to_thread(fake.wait_for, lambda: len(fake.pending_ids) == 1)
            fake.refuse_ws = True
            fake.drop_sockets()  # no frame will say that it started
            fake.release(other)
            return await task
        finally:
            await made.aclose()

    result = run(scenario())
    assert result.image == PNG
    assert fake.called("GET", "/queue")  # it asked, and found its prompt running
    assert not fake.called("POST", "/interrupt")


def test_a_prompt_lost_in_a_server_restart_fails_transiently_at_once(fake):
    fake.scenario = "hold"

    async def scenario() -> Result:
        made = backend(fake)  # run_timeout 20 s: the test must end long before
        try:
            task = asyncio.create_task(made.generate(Request(prompt="x", seed=1)))
            await asyncio.to_thread(fake.wait_for, lambda: fake.running_id is not None)
            fake.restart()
            return await task
        finally:
            await made.aclose()

    started = time.monotonic()
    with pytest.raises(
        GenerationError, match=r"no longer on the server .* \(ComfyUI restarted\?\)"
    ) as caught:
        run(scenario())
    assert caught.value.transient and time.monotonic() - started < 5


def test_a_server_down_mid_run_fails_transiently_at_the_deadline_naming_the_url(fake):
    fake.scenario = "hold"

    async def scenario() -> Result:
        made = backend(fake, run_timeout=1.0)
        try:
            task = asyncio.create_task(made.generate(Request(prompt="x", seed=1)))
            await asyncio.to_thread(fake.wait_for, lambda: fake.running_id is not None)
            fake.stop()  # the whole server goes away mid-run
            return await task
        finally:
            await made.aclose()

    with pytest.raises(GenerationError) as caught:
        run(scenario())
    assert caught.value.transient
    assert str(caught.value).startswith(
        f"comfyui flux: lost the connection to ComfyUI at {fake.url} mid-prompt and did not "
        "get it back within 1 s ("
    )


def test_a_socket_drop_then_reconnect_follows_the_prompt_on_the_new_socket(fake):
    fake.scenario = "hold"

    async def scenario() -> Result:
        made = backend(fake)
        try:
            task = asyncio.create_task(made.generate(Request(prompt="x", seed=1)))
            await asyncio.to_thread(fake.wait_for, lambda: fake.running_id is not None)
            prompt_id = fake.running_id
            fake.drop_sockets()
            await asyncio.to_thread(fake.wait_for, lambda: fake.ws_connects >= 2, 10, "a reconnect")
            fake.release(prompt_id)  # the run ends (interrupted) while the new socket listens
            return await task
        finally:
            await made.aclose()

    with pytest.raises(GenerationError, match="interrupted on the server"):
        run(scenario())


# ------------------------------------------------------------------ config and workflows


def test_config_rejects_a_bad_layout_and_an_auth_value_that_is_not_a_variable_name():
    with pytest.raises(ConfigError, match="layout: 'single' is not one of split, checkpoint"):
        registry.validate_block("f", {"type": "comfyui", "layout": "single"})
    with pytest.raises(ConfigError, match="auth_env: not an environment variable name"):
        registry.validate_block("f", {"type": "comfyui", "auth_env": "Bearer abc.def"})


def test_auth_header_comes_from_the_environment_on_http_and_websocket(fake, monkeypatch):
    monkeypatch.setenv("COMFY_TOKEN", "Bearer s3cret")
    run(once(backend(fake, auth_header="X-Auth", auth_env="COMFY_TOKEN")))
    sent = {path: headers.get("x-auth") for path, headers in fake.headers}
    assert sent["/ws"] == sent["/prompt"] == sent["/view"] == "Bearer s3cret"
    monkeypatch.delenv("COMFY_TOKEN")
    with pytest.raises(GenerationError, match=r"not configured \(set COMFY_TOKEN\)"):
        run(once(backend(fake, auth_header="X-Auth", auth_env="COMFY_TOKEN")))


def test_a_rejected_auth_header_is_named_and_permanent(fake, monkeypatch):
    monkeypatch.setenv("COMFY_TOKEN", "Bearer wrong")
    fake.refuse_ws, fake.refuse_status = True, "403 Forbidden"
    with pytest.raises(GenerationError) as caught:
        run(once(backend(fake, auth_header="X-Auth", auth_env="COMFY_TOKEN")))
    assert str(caught.value) == (
        f"comfyui flux: ComfyUI at {fake.url} rejected the value of $COMFY_TOKEN (HTTP 403); "
        "check it"
    )
    assert not caught.value.transient and "wrong" not in str(caught.value)


def _user_workflow(tmp_path: Path, graph: dict[str, Any]) -> str:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(graph))
    return str(path)


def test_a_user_workflow_is_placed_by_class_and_says_what_it_ignores(fake, tmp_path):
    graph = json.loads((FIXTURES / "prompt_ok.json").read_text())["request"]["json"]["prompt"]
    made = backend(fake, workflow=_user_workflow(tmp_path, graph))
    assert made.workflow.ignored == ["prompt", "negative", "seed", "steps"]
    result = run(once(made, Request(prompt="ignored", width=64, height=32, seed=3)))
    (posted,) = fake.posted_graphs()
    assert posted["1"]["inputs"]["width"] == 64 and posted["1"]["inputs"]["height"] == 32
    assert result.image == PNG and result.steps is None and result.model == "mine"


def test_a_user_flux_graph_finds_prompt_and_negative_through_the_sampler(tmp_path):
    graph = json.loads((FIXTURES / "workflow_flux_schnell_unet_api.json").read_text())
    flow = load_workflow(block("http://x", workflow=_user_workflow(tmp_path, graph)))
    assert flow.places["prompt"] == (("4", "text"),) and flow.places["negative"] == (("5", "text"),)
    assert flow.places["seed"] == (("7", "seed"),) and flow.output == "9" and flow.ignored == []
    assert {m.folder for m in flow.model_files} == {"diffusion_models", "text_encoders", "vae"}


def test_ambiguous_or_wrong_places_are_named(tmp_path):
    graph = json.loads((FIXTURES / "workflow_flux_schnell_unet_api.json").read_text())
    graph["11"] = {"class_type": "KSampler", "inputs": dict(graph["7"]["inputs"])}
    with pytest.raises(
        ConfigError,
        match=r"more than one place for seed \(7.seed \(KSampler\), 11.seed \(KSampler\)\); "
        r"say which with seed_at",
    ):
        load_workflow(block("http://x", workflow=_user_workflow(tmp_path, graph)))
    flow = load_workflow(
        block(
            "http://x",
            workflow=_user_workflow(tmp_path, graph),
            seed_at="7.seed,11.seed",
            steps_at="7.steps",
        )
    )
    assert flow.places["seed"] == (("7", "seed"), ("11", "seed"))
    with pytest.raises(ConfigError, match="prompt_at: there is no node 99"):
        load_workflow(
            block(
                "http://x",
                workflow=_user_workflow(tmp_path, graph),
                prompt_at="99.text",
                seed_at="7.seed",
            )
        )
    with pytest.raises(
        ConfigError, match=r"prompt_at: input clip of node 4 .CLIPTextEncode. is linked from node 2"
    ):
        load_workflow(
            block(
                "http://x",
                workflow=_user_workflow(tmp_path, graph),
                prompt_at="4.clip",
                seed_at="7.seed",
            )
        )


def test_a_ui_format_file_is_refused_with_how_to_export(tmp_path):
    with pytest.raises(ConfigError, match="web UI's format; export it with 'Export \\(API\\)'"):
        load_workflow(
            block("http://x", workflow=_user_workflow(tmp_path, {"nodes": [], "links": []}))
        )


def test_registered_lazily():
    assert "comfyui" in registry.known_types()
    assert registry.get_type("comfyui") is COMFYUI_TYPE


# ------------------------------------------------------------------ imagen backends / generate


def test_imagen_backends_shows_reachability_version_gpu_and_each_missing_file(fake, home, tmp_path):
    fake.installed = {"diffusion_models": ["flux1-schnell.safetensors"], "vae": ["ae.safetensors"]}
    user = _user_workflow(
        tmp_path, json.loads((FIXTURES / "prompt_ok.json").read_text())["request"]["json"]["prompt"]
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    home.write_config(
        "backends:\n"
        f"  flux:\n    type: comfyui\n    url: {fake.url}\n"
        f"  mine:\n    type: comfyui\n    url: {fake.url}\n    workflow: {user}\n"
        f"  gone:\n    type: comfyui\n    url: {down}\n"
    )
    done = home.imagen("backends")
    assert done.returncode == 0, done.stderr
    blocks: dict[str, list[str]] = {}
    current = ""
    for line in done.stdout.splitlines()[1:]:
        if line.startswith("    "):
            blocks[current].append(line.strip())
        else:
            current = line.split()[0]
            blocks[current] = []
    assert blocks["flux"] == [
        "workflow: flux-schnell (split)",
        f"reachable: {fake.url}, ComfyUI 0.3.64",
        "device: cpu: 22.6 GiB free of 23.5 GiB",
        "previews: off (start ComfyUI with --preview-method auto to watch renders appear)",
        "missing model: clip_l.safetensors (models/text_encoders)",
        "missing model: t5xxl_fp8_e4m3fn.safetensors (models/text_encoders)",
    ]
    rows = {
        line.split()[0]: line.split() for line in done.stdout.splitlines()[1:] if line[0] != " "
    }
    assert rows["flux"][2] == "flux-schnell" and rows["mine"][2] == "mine"
    # the status column: what the probe found, not `ok`
    assert rows["flux"][-2:] == ["missing", "models"]
    assert rows["gone"][-1] == "unreachable"
    assert rows["mock"][-1] == "ok"
    assert blocks["mine"][1] == "ignores: prompt, negative, seed, steps (no place in the workflow)"
    assert blocks["gone"][-1].startswith(f"unreachable: {down} (ConnectError")
    assert blocks["mock"] == []


def test_imagen_generate_with_a_comfyui_backend_writes_the_image(fake, home):
    home.write_config(f"backends:\n  flux:\n    type: comfyui\n    url: {fake.url}\n")
    done = home.imagen("generate", "a red fox", "--backend", "flux", "--seed", "9")
    assert done.returncode == 0, done.stderr
    (image,) = [p for p in home.files() if p.suffix == ".png"]
    assert image.read_bytes().startswith(PNG[:8])
    assert fake.posted_graphs()[0]["7"]["inputs"]["seed"] == 9


def test_imagen_generate_reports_a_missing_model_on_one_line(fake, home):
    fake.installed = {}
    home.write_config(f"backends:\n  flux:\n    type: comfyui\n    url: {fake.url}\n")
    done = home.imagen("generate", "a red fox", "--backend", "flux")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "model file 'flux1-schnell.safetensors' is not installed" in done.stderr
    assert "Traceback" not in done.stderr and not home.files()
