"""The ComfyUI test server answers as the real one did in the captures."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.comfyui_server import ComfyServer
from tests.comfyui_server.fixtures import capture, comfy, messages_until_done, open_socket, wait_for, workflow_capture

__all__ = ["comfy"]


def kinds(frames: list) -> list[str]:
    """Message types in order; progress_state and binary frames left out."""
    return [f["type"] for f in frames if isinstance(f, dict) and f["type"] != "progress_state"]


def run(server: ComfyServer, body: dict, client_id: str = "c1") -> tuple[dict, list]:
    ws = open_socket(server, client_id)
    try:
        answer = requests.post(server.url + "/prompt", json={**body, "client_id": client_id}, timeout=5)
        assert answer.status_code == 200, answer.text
        prompt_id = answer.json()["prompt_id"]
        return answer.json(), messages_until_done(ws, prompt_id)
    finally:
        ws.close()


def history(server: ComfyServer, prompt_id: str) -> dict:
    return requests.get(f"{server.url}/history/{prompt_id}", timeout=5).json()


def test_basic_run_has_the_captured_message_order_and_history_shape(comfy: ComfyServer) -> None:
    recorded = capture("run_basic_emptyimage_saveimage.json")
    body = recorded["post_prompt"]["request"]["json"]
    answer, frames = run(comfy, {"prompt": body["prompt"], "extra_data": body["extra_data"]})
    assert set(answer) == set(recorded["post_prompt"]["response"]["json"])
    assert kinds(frames) == kinds([m["json"] for m in recorded["ws_messages"]])
    assert frames[0]["data"]["sid"] == "c1"  # the first status names the session
    entry = history(comfy, answer["prompt_id"])[answer["prompt_id"]]
    captured = next(iter(recorded["history"]["response"]["json"].values()))
    assert set(entry) == set(captured)
    assert entry["outputs"] == captured["outputs"]  # renderloop-basic_00001_.png, subfolder ""
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in captured["status"]["messages"]]
    assert entry["prompt"][3] == captured["prompt"][3] | {"client_id": "c1"}
    assert entry["meta"] == captured["meta"]


def test_png_carries_the_graph_and_extra_pnginfo_as_text_chunks(comfy: ComfyServer) -> None:
    recorded = capture("run_basic_emptyimage_saveimage.json")
    body = recorded["post_prompt"]["request"]["json"]
    answer, _ = run(comfy, {"prompt": body["prompt"], "extra_data": body["extra_data"]})
    image = history(comfy, answer["prompt_id"])[answer["prompt_id"]]["outputs"]["2"]["images"][0]
    view = requests.get(comfy.url + "/view", params=image, timeout=5)
    assert view.headers["Content-Type"] == "image/png"
    assert view.headers["Content-Disposition"] == 'filename="renderloop-basic_00001_.png"'
    png = Image.open(io.BytesIO(view.content))
    assert png.size == tuple(recorded["view"][0]["png"]["width_height"])
    assert {k: json.loads(v) for k, v in png.text.items()} == recorded["view"][0]["png"]["text_chunks"]


def test_numbering_continues_from_disk_in_the_prefix_subfolder(comfy: ComfyServer) -> None:
    first = capture("run_subfolder_batch2_first.json")
    second = capture("run_subfolder_batch2_second.json")
    for recorded in (first, second):
        body = recorded["post_prompt"]["request"]["json"]
        answer, _ = run(comfy, {"prompt": body["prompt"]})
        outputs = history(comfy, answer["prompt_id"])[answer["prompt_id"]]["outputs"]
        assert outputs == next(iter(recorded["history"]["response"]["json"].values()))["outputs"]
    assert [p.name for p in comfy.output_files()] == [f"hero-slug_0000{i}_.png" for i in range(1, 5)]
    with Image.open(comfy.output_files()[0]) as png:
        assert png.size == (768, 448)  # the ImageScale size, as captured


def test_identical_resubmission_is_served_from_cache_without_a_new_file(comfy: ComfyServer) -> None:
    body = capture("run_subfolder_batch2_second.json")["post_prompt"]["request"]["json"]
    run(comfy, {"prompt": body["prompt"]})
    files = comfy.output_files()
    answer, frames = run(comfy, {"prompt": body["prompt"]})
    recorded = capture("run_subfolder_identical_resubmit_cached.json")
    assert kinds(frames) == kinds([m["json"] for m in recorded["ws_messages"]])
    assert comfy.output_files() == files
    cached = next(f for f in frames if f["type"] == "execution_cached")
    assert sorted(cached["data"]["nodes"]) == ["10", "11", "12"]
    entry = history(comfy, answer["prompt_id"])[answer["prompt_id"]]
    assert entry["outputs"]["12"]["images"][0]["filename"] == "hero-slug_00001_.png"


def test_every_captured_validation_error_gets_the_captured_answer(tmp_path: Path) -> None:
    with ComfyServer(tmp_path, models=()) as server:  # the capture server had no models installed
        for case in capture("prompt_validation_errors.json")["cases"]:
            request, expected = case["request"], case["response"]
            if "raw_body" in request:
                answer = requests.post(server.url + "/prompt", data=request["raw_body"], timeout=5)
                assert answer.status_code == 500, case["name"]
                assert answer.headers["Content-Type"] == expected["headers"]["Content-Type"]
                assert answer.text == expected["text"]
                continue
            answer = requests.post(server.url + "/prompt", json=request["json"], timeout=5)
            assert answer.status_code == expected["status"], case["name"]
            assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
            got, want = answer.json(), expected["json"]
            if expected["status"] == 200:
                assert set(got) == set(want)
            else:
                assert _comparable(got["error"]) == _comparable(want["error"]), case["name"]
            assert _comparable(got["node_errors"]) == _comparable(want["node_errors"]), case["name"]


def _comparable(value: object) -> object:
    """Tracebacks and exception class paths differ between servers; errors on one node come in set order."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in ("traceback", "exception_type")}
    if isinstance(value, list):
        items = [_comparable(v) for v in value]
        return sorted(items, key=json.dumps) if all(isinstance(v, dict) for v in items) else items
    return value


@pytest.mark.parametrize("model", ["flux-schnell", "flux-dev", "z-image-turbo", "qwen-image"])
def test_missing_model_files_get_the_captured_node_errors(tmp_path: Path, model: str) -> None:
    recorded = workflow_capture(f"{model}.server-response.json")["without_model_files"]
    with ComfyServer(tmp_path, models=()) as server:
        answer = requests.post(server.url + "/prompt", json=recorded["request"]["json"], timeout=5)
    assert answer.status_code == 400
    assert _comparable(answer.json()) == _comparable(recorded["response"]["json"])


def test_view_refuses_what_the_real_server_refuses(comfy: ComfyServer) -> None:
    for name, recorded in capture("view_and_history_misc.json").items():
        if name.startswith("view_"):
            answer = requests.get(comfy.url + recorded["request"]["path"], timeout=5)
            assert answer.status_code == recorded["response"]["status"], name


def test_idle_endpoints_have_the_captured_shapes(comfy: ComfyServer) -> None:
    recorded = capture("idle_endpoints.json")
    for name in ("get_queue", "get_prompt", "get_history_unknown_id", "get_object_info_SaveImage",
                 "get_object_info_unknown", "get_api_prefixed_queue", "get_features"):
        answer = requests.get(comfy.url + recorded[name]["request"]["path"], timeout=5)
        assert answer.status_code == 200
        assert answer.json() == recorded[name]["response"]["json"], name
    stats = requests.get(comfy.url + "/system_stats", timeout=5).json()
    assert stats["system"]["comfyui_version"] == "0.3.64"


def test_object_info_lists_installed_model_files(tmp_path: Path) -> None:
    with ComfyServer(tmp_path, models=["ae.safetensors"]) as server:
        info = requests.get(server.url + "/object_info/VAELoader", timeout=5).json()
        full = requests.get(server.url + "/object_info", timeout=5).json()
    assert info["VAELoader"]["input"]["required"]["vae_name"][0] == ["ae.safetensors", "pixel_space"]
    assert full["UNETLoader"]["input"]["required"]["unet_name"][0] == ["ae.safetensors"]
    assert len(full) == 478


def test_restart_forgets_queue_and_history_but_numbering_continues(comfy: ComfyServer) -> None:
    body = capture("run_subfolder_batch2_first.json")["post_prompt"]["request"]["json"]
    answer, _ = run(comfy, {"prompt": body["prompt"]})
    comfy.restart()
    recorded = capture("server_restart.json")
    assert history(comfy, answer["prompt_id"]) == recorded["history_by_id_after_restart"]["response"]["json"]
    assert requests.get(comfy.url + "/history", timeout=5).json() == {}
    assert requests.get(comfy.url + "/queue", timeout=5).json() == recorded["queue_after_restart"]["response"]["json"]
    again, _ = run(comfy, {"prompt": body["prompt"]})  # the cache is cold: it runs again
    names = [i["filename"] for i in history(comfy, again["prompt_id"])[again["prompt_id"]]["outputs"]["12"]["images"]]
    assert names == ["hero-slug_00003_.png", "hero-slug_00004_.png"]
    assert again["number"] == 0


def test_restart_mid_render_loses_the_running_prompt(tmp_path: Path) -> None:
    with ComfyServer(tmp_path, render_seconds=5.0) as server:
        answer = requests.post(server.url + "/prompt", json={"prompt": _basic_prompt("x")}, timeout=5).json()
        wait_for(lambda: server.engine.running, what="the prompt to start")
        server.restart()
        assert history(server, answer["prompt_id"]) == {}
        assert requests.get(server.url + "/queue", timeout=5).json() == {"queue_running": [], "queue_pending": []}
        assert server.output_files() == []


def test_reconnect_with_the_same_client_id_gets_status_then_the_current_node(tmp_path: Path) -> None:
    with ComfyServer(tmp_path, render_seconds=1.0) as server:
        ws = open_socket(server, "same")
        ws.recv()
        prompt = capture("run_basic_emptyimage_saveimage.json")["post_prompt"]["request"]["json"]["prompt"]
        requests.post(server.url + "/prompt", json={"prompt": _with_sampler(prompt), "client_id": "same"}, timeout=5)
        wait_for(lambda: server.engine.last_node_id == "3", what="the sampler to run")
        ws.close()
        second = open_socket(server, "same")
        first_two = [json.loads(second.recv()) for _ in range(2)]
        second.close()
    recorded = capture("ws_reconnect_same_client_id.json")["ws_messages_second_socket"]
    assert [m["type"] for m in first_two] == [m["json"]["type"] for m in recorded[:2]]
    assert first_two[0]["data"]["sid"] == "same"
    assert first_two[1]["data"] == {"node": "3"}  # no prompt_id, as captured


def test_binary_previews_legacy_and_with_metadata(comfy: ComfyServer) -> None:
    prompt = _with_sampler(_basic_prompt("p"))
    _, frames = run(comfy, {"prompt": prompt})
    legacy = [f for f in frames if isinstance(f, bytes)]
    assert legacy and all(f[:8].hex() == "0000000100000002" and f[8:16] == b"\x89PNG\r\n\x1a\n" for f in legacy)
    ws = open_socket(comfy, "meta")
    ws.recv()
    ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    flags = json.loads(ws.recv())
    assert flags == capture("run_ws_binary_preview_with_metadata.json")["ws_messages"][1]["json"]
    answer = requests.post(comfy.url + "/prompt", json={"prompt": _with_sampler(_basic_prompt("q")),
                                                         "client_id": "meta"}, timeout=5).json()
    frames = messages_until_done(ws, answer["prompt_id"])
    ws.close()
    typed = [f for f in frames if isinstance(f, bytes)]
    assert typed and all(int.from_bytes(f[:4], "big") == 4 for f in typed)
    size = int.from_bytes(typed[0][4:8], "big")
    assert json.loads(typed[0][8:8 + size])["prompt_id"] == answer["prompt_id"]


def test_without_client_id_only_broadcasts_reach_a_socket(comfy: ComfyServer) -> None:
    ws = open_socket(comfy, "listener")
    ws.recv()
    requests.post(comfy.url + "/prompt", json={"prompt": _basic_prompt("n")}, timeout=5)
    wait_for(lambda: comfy.timeline, what="the run")
    ws.settimeout(0.3)
    seen = []
    try:
        while True:
            seen.append(json.loads(ws.recv())["type"])
    except websocket_timeout():
        pass
    ws.close()
    expected = {m["json"]["type"] for m in capture("run_without_client_id.json")["ws_messages"]}
    assert set(seen) <= expected == {"status", "progress_state"}


def websocket_timeout() -> type:
    import websocket

    return websocket.WebSocketTimeoutException


def test_delete_and_targeted_interrupt(tmp_path: Path) -> None:
    with ComfyServer(tmp_path, render_seconds=5.0) as server:
        post = lambda tag: requests.post(server.url + "/prompt", json={"prompt": _basic_prompt(tag),  # noqa: E731
                                                                       "client_id": "q"}, timeout=5).json()
        a, b = post("a"), post("b")
        wait_for(lambda: server.engine.running, what="a to start")
        queue = requests.get(server.url + "/queue", timeout=5).json()
        assert [item[1] for item in queue["queue_running"]] == [a["prompt_id"]]
        assert [item[1] for item in queue["queue_pending"]] == [b["prompt_id"]]
        assert len(queue["queue_running"][0]) == 5  # [number, prompt_id, prompt, extra_data, outputs]
        requests.post(server.url + "/queue", json={"delete": [b["prompt_id"]]}, timeout=5)
        requests.post(server.url + "/interrupt", json={"prompt_id": b["prompt_id"]}, timeout=5)  # not running: ignored
        assert server.engine.running is not None
        requests.post(server.url + "/interrupt", json={"prompt_id": a["prompt_id"]}, timeout=5)
        entry = wait_for(lambda: history(server, a["prompt_id"]), what="a's history")[a["prompt_id"]]
        assert history(server, b["prompt_id"]) == {}
    recorded = capture("queue_busy_delete_interrupt.json")["history_a_interrupted"]["response"]["json"]
    captured = next(iter(recorded.values()))
    assert entry["status"]["status_str"] == captured["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in captured["status"]["messages"]]
    assert entry["outputs"] == {} and entry["meta"] == {}


def test_injected_out_of_memory_is_an_execution_error_with_the_real_shape(comfy: ComfyServer) -> None:
    comfy.fail_next_oom()
    answer, frames = run(comfy, {"prompt": _with_sampler(_basic_prompt("oom"))})
    recorded = capture("run_execution_error_corrupt_model_file.json")
    assert kinds(frames)[-3:] == kinds([m["json"] for m in recorded["ws_messages"]])[-3:]
    error = next(f for f in frames if isinstance(f, dict) and f["type"] == "execution_error")["data"]
    captured = next(m["json"]["data"] for m in recorded["ws_messages"] if m["json"]["type"] == "execution_error")
    assert set(error) == set(captured)
    assert error["exception_type"] == "torch.OutOfMemoryError"
    status = history(comfy, answer["prompt_id"])[answer["prompt_id"]]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)


def test_prefix_outside_the_output_folder_fails_at_run_time(comfy: ComfyServer) -> None:
    recorded = capture("run_execution_error_prefix_outside_output.json")
    answer, frames = run(comfy, {"prompt": recorded["post_prompt"]["request"]["json"]["prompt"]})
    error = next(f for f in frames if isinstance(f, dict) and f["type"] == "execution_error")["data"]
    assert error["exception_message"].startswith("**** ERROR: Saving image outside the output folder is not allowed.")
    assert error["node_type"] == "SaveImage"


def test_strict_prompt_ids_like_newer_comfyui(tmp_path: Path) -> None:
    with ComfyServer(tmp_path, strict_prompt_id=True) as server:
        bad = requests.post(server.url + "/prompt", json={"prompt": _basic_prompt("s"), "prompt_id": "renderloop-1"},
                            timeout=5)
        good = requests.post(server.url + "/prompt", json={"prompt": _basic_prompt("s"),
                                                           "prompt_id": "f5b7ed3c-ba5a-4bae-aca2-9f2ac7364cb9"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_prompt_id"
    assert good.json()["prompt_id"] == "f5b7ed3c-ba5a-4bae-aca2-9f2ac7364cb9"


def test_timeline_measures_idle_gaps_between_queued_prompts(tmp_path: Path) -> None:
    with ComfyServer(tmp_path, render_seconds=0.05) as server:
        for tag in "abcd":
            requests.post(server.url + "/prompt", json={"prompt": _basic_prompt(tag)}, timeout=5)
        wait_for(lambda: len(server.timeline) == 4, what="four runs")
        gaps = server.idle_gaps()
    assert len(gaps) == 3 and max(gaps) < 0.05  # queued back to back: the "GPU" never waited long
    assert all(t.end - t.start >= 0.05 for t in server.timeline)


def test_test_endpoints_give_the_timeline_and_submission_times_to_another_process(tmp_path: Path) -> None:
    with ComfyServer(tmp_path, render_seconds=0.02) as server:
        before = time.time()
        ids = [requests.post(server.url + "/prompt", json={"prompt": _basic_prompt(tag)}, timeout=5).json()["prompt_id"]
               for tag in "ab"]
        after = time.time()
        requests.post(server.url + "/prompt", json={"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}, timeout=5)
        wait_for(lambda: len(server.timeline) == 2, what="two runs")
        timeline = requests.get(server.url + "/_test/timeline", timeout=5).json()
        submissions = requests.get(server.url + "/_test/submissions", timeout=5).json()
        perf, wall = requests.get(server.url + "/_test/clock", timeout=5).json()
    assert [row[0] for row in timeline] == ids and all(end - start >= 0.02 for _, start, end, *_ in timeline)
    assert [row[0] for row in submissions] == ids  # the refused graph is not a submission
    assert before <= submissions[0][1] <= submissions[1][1] <= after
    assert timeline[-1][2] <= perf and after <= wall <= time.time()  # the timeline's clock, with the wall's


def test_a_model_switch_costs_the_load_time_and_is_on_the_timeline(tmp_path: Path) -> None:
    """Issue 11: consecutive prompts of different models make the server load weights (load_seconds)."""
    graphs = {name: workflow_capture(f"{name}.api.json") for name in ("z-image-turbo", "flux-schnell")}
    with ComfyServer(tmp_path, render_seconds=0.02, load_seconds=0.3, previews=False) as server:
        for index, name in enumerate(["z-image-turbo", "z-image-turbo", "flux-schnell", "z-image-turbo"]):
            graph = json.loads(json.dumps(graphs[name]))
            for node in graph.values():  # every prompt unique: no cache
                if node["class_type"] == "SaveImage":
                    node["inputs"]["filename_prefix"] = f"t/{index}"
                if "seed" in node["inputs"]:
                    node["inputs"]["seed"] = index
            answer = requests.post(server.url + "/prompt", json={"prompt": graph}, timeout=5)
            assert answer.status_code == 200, answer.text
        wait_for(lambda: len(server.timeline) == 4, timeout=10, what="four runs")
        rows = requests.get(server.url + "/_test/timeline", timeout=5).json()
    assert [t.switched for t in server.timeline] == [True, False, True, True] and server.switches() == 3
    assert [row[4] for row in rows] == [True, False, True, True]
    assert "z_image_turbo_bf16.safetensors" in rows[0][3] and "flux1-schnell.safetensors" in rows[2][3]
    durations = [t.end - t.start for t in server.timeline]
    assert durations[1] < 0.25 <= min(durations[0], durations[2], durations[3])


def _basic_prompt(tag: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 7}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"t/{tag}"}}}


def _with_sampler(prompt: dict) -> dict:
    """A graph with a KSampler (progress and previews) whose decoded image is saved."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ae.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": json.dumps(prompt), "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 3, "cfg": 1.0, "sampler_name": "euler",
                                                   "scheduler": "simple", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["6", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "t/sampled"}},
    }


def test_queue_items_carry_extra_data_as_captured_and_history_keeps_them(tmp_path: Path) -> None:
    """Issue 11: a restarted worker recognises its prompts by the extra_data /queue and /history give back."""
    recorded = capture("queue_busy_delete_interrupt.json")
    busy = recorded["get_queue_busy"]["response"]["json"]
    with ComfyServer(tmp_path, render_seconds=2.0) as server:
        post = lambda tag, **more: requests.post(server.url + "/prompt", json={  # noqa: E731
            "prompt": _basic_prompt(tag), "client_id": recorded["client_id"],
            "extra_data": {"extra_pnginfo": {"renderloop": {"slug": tag}}}, **more}, timeout=5).json()
        a = post("a")
        wait_for(lambda: server.engine.running, what="a to start")
        b, c = post("b"), post("c", front=True)
        queue = requests.get(server.url + "/queue", timeout=5).json()
        assert [len(item) for item in queue["queue_pending"]] == [len(item) for item in busy["queue_pending"]] == [5, 5]
        assert [item[0] < 0 for item in queue["queue_pending"]] == [item[0] < 0 for item in busy["queue_pending"]]
        assert queue["queue_running"][0][3] == {"extra_pnginfo": {"renderloop": {"slug": "a"}},
                                                "client_id": recorded["client_id"]}
        assert set(busy["queue_running"][0][3]) == {"client_id"}  # the capture sent no extra_pnginfo
        requests.post(server.url + "/queue", json={"delete": [b["prompt_id"]]}, timeout=5)
        assert [item[1] for item in requests.get(server.url + "/queue", timeout=5).json()["queue_pending"]] == [
            c["prompt_id"]]
        wait_for(lambda: len(server.timeline) == 2, timeout=10, what="a and c")
        last = requests.get(server.url + "/history?max_items=1", timeout=5).json()
    (prompt_id, entry), = last.items()
    assert prompt_id == c["prompt_id"] and entry["prompt"][1] == prompt_id  # the newest: c ran after a
    assert entry["prompt"][3]["extra_pnginfo"] == {"renderloop": {"slug": "c"}}
