"""The client's message handling and error mapping, fed with the recorded ComfyUI exchanges themselves."""
from __future__ import annotations

import copy

import pytest

from tests.comfyui_server.fixtures import capture, workflow_capture
from tests.comfyui_server.server import load_object_info
from win_side.backends.comfyui import errors
from win_side.backends.comfyui.client import Rejected
from win_side.backends.comfyui.events import EventStream, Watch
from win_side.backends.comfyui.graphs import Graph

RUNS = ["run_basic_emptyimage_saveimage.json", "run_subfolder_batch2_first.json",
        "run_subfolder_identical_resubmit_cached.json", "run_progress_upscale_model.json",
        "run_execution_error_corrupt_model_file.json", "run_execution_error_prefix_outside_output.json",
        "run_ws_binary_preview_legacy.json", "run_client_chosen_prompt_id_nonuuid.json",
        "run_after_restart_counter_continues.json"]
IDS = {"server": "http://gpu:8188", "prompt_id": "p"}


def stream() -> EventStream:
    return EventStream("http://gpu:8188", "c")  # never started: handle() is fed by hand


def feed(events: EventStream, messages: list[dict], prompt_id: str) -> int:
    """Feed the text messages; the index at which the watch became done (-1: never)."""
    for index, message in enumerate(messages):
        events.handle(message)
        if events._watches[prompt_id].done:
            return index
    return -1


def text_messages(recorded: list[dict]) -> list[dict]:
    return [m["json"] for m in recorded if m["kind"] == "text"]


def watching(prompt_id: str) -> EventStream:
    """A stream that is not connected, with a watch on ``prompt_id``."""
    events = stream()
    events._watches[prompt_id] = Watch(prompt_id)
    return events


@pytest.mark.parametrize("name", RUNS)
def test_done_only_on_executing_null_for_our_prompt(name: str) -> None:
    recorded = capture(name)
    prompt_id = recorded["post_prompt"]["response"]["json"]["prompt_id"]
    messages = text_messages(recorded["ws_messages"])
    events = watching(prompt_id)
    done_at = feed(events, messages, prompt_id)
    last = max(i for i, m in enumerate(messages) if m["type"] == "executing" and m["data"]["node"] is None)
    assert done_at == last  # not at execution_success, which comes before the history is written


def test_after_an_execution_error_done_still_waits_for_executing_null() -> None:
    recorded = capture("run_execution_error_corrupt_model_file.json")
    prompt_id = recorded["post_prompt"]["response"]["json"]["prompt_id"]
    messages = text_messages(recorded["ws_messages"])
    events = watching(prompt_id)
    done_at = feed(events, messages, prompt_id)
    error_at = next(i for i, m in enumerate(messages) if m["type"] == "execution_error")
    assert done_at > error_at  # the history is written only then


def test_progress_becomes_a_fraction() -> None:
    recorded = capture("run_progress_upscale_model.json")
    prompt_id = recorded["post_prompt"]["response"]["json"]["prompt_id"]
    events = watching(prompt_id)
    seen = []
    for message in text_messages(recorded["ws_messages"]):
        events.handle(message)
        fraction = events._watches[prompt_id].fraction
        if fraction is not None and (not seen or seen[-1] != fraction):
            seen.append(fraction)
    assert seen == [pytest.approx(i / 9) for i in range(1, 10)]


def test_messages_of_other_prompts_and_sessions_are_ignored() -> None:
    recorded = capture("queue_busy_delete_interrupt.json")
    a = recorded["post_a"]["response"]["json"]["prompt_id"]
    c = recorded["post_c_front"]["response"]["json"]["prompt_id"]
    events = watching(c)
    messages = text_messages(recorded["ws_messages"])
    done_at = feed(events, messages, c)
    assert done_at == len(messages) - 2  # A's interruption and done did not end C's wait
    events = watching(a)
    assert feed(events, messages, a) > next(
        i for i, m in enumerate(messages) if m["type"] == "execution_interrupted" and m["data"]["prompt_id"] == a
    )  # A's own interruption, then its done


def test_reconnect_messages_without_prompt_id_do_not_end_a_wait() -> None:
    recorded = capture("ws_reconnect_same_client_id.json")
    prompt_id = recorded["post_prompt"]["response"]["json"]["prompt_id"]
    events = watching(prompt_id)
    second = text_messages(recorded["ws_messages_second_socket"])
    assert second[1]["data"] == {"node": "3"}
    events.handle(second[0])
    events.handle(second[1])
    assert not events._watches[prompt_id].done
    assert feed(events, second[2:], prompt_id) == len(second) - 3
    events.handle({"type": "executing"})  # garbage shapes are ignored, never a crash
    events.handle(["not", "a", "dict"])
    events.handle({"type": "progress", "data": {"prompt_id": prompt_id, "value": "x", "max": 0}})


@pytest.mark.parametrize("model", ["flux-schnell", "flux-dev", "z-image-turbo", "qwen-image"])
def test_missing_files_answer_becomes_missing_model_naming_the_files(model: str) -> None:
    answer = workflow_capture(f"{model}.server-response.json")["without_model_files"]["response"]["json"]
    failure = errors.rejected(Rejected(answer["error"], answer["node_errors"]), "http://gpu:8188", IDS)
    assert failure.kind == "missing-model"
    graph = workflow_capture(f"{model}.api.json")
    for file in {v for n in graph.values() for v in n["inputs"].values() if str(v).endswith(".safetensors")}:
        assert file in failure.message
    assert failure.message.startswith("ComfyUI at http://gpu:8188 does not list ")
    assert failure.backend_ids == IDS and failure.detail["node_errors"] == answer["node_errors"]


def validation_case(name: str) -> dict:
    return next(c for c in capture("prompt_validation_errors.json")["cases"] if c["name"] == name)


@pytest.mark.parametrize("name, expected", [
    ("value_not_in_list", "node 2 (ImageScale) input 'upscale_method': upscale_method: 'bogus' not in"),
    ("value_below_min", "node 1 (EmptyImage) input 'width': Value 0 smaller than min of 1"),
    ("missing_required_input", "node 1 (EmptyImage) input 'width': Required input is missing"),
    ("return_type_mismatch", "node 2 (SaveImage) input 'images': images, received_type(LATENT) mismatch"),
    ("unknown_class_type", "refused the graph: Cannot execute because node NoSuchNodeType does not exist.: Node ID '#2'"),
    ("bad_value_type_int", "node 1 (EmptyImage) input 'width': width, wide, invalid literal"),
])
def test_refused_graphs_become_invalid_spec_naming_node_and_input(name: str, expected: str) -> None:
    answer = validation_case(name)["response"]["json"]
    failure = errors.rejected(Rejected(answer["error"], answer["node_errors"]), "http://gpu:8188", IDS)
    assert failure.kind == "invalid-spec"
    assert expected in failure.message
    assert "\n" not in failure.message


def test_a_200_with_node_errors_blocks_only_the_outputs_it_names() -> None:
    answer = validation_case("two_outputs_one_bad")["response"]["json"]
    assert answer["node_errors"] and errors.blocking_errors(answer["node_errors"], "4")
    assert errors.blocking_errors(answer["node_errors"], "2") == {}


def history_entry(name: str, key: str = "history") -> dict:
    return next(iter(capture(name)[key]["response"]["json"].values()))


def test_execution_error_from_history_carries_comfyuis_message() -> None:
    status = history_entry("run_execution_error_corrupt_model_file.json")["status"]
    failure = errors.execution_failed(errors.status_events(status), status, "http://gpu:8188", IDS)
    assert failure.kind == "backend-error"
    assert "(node 1) failed: safetensors._safetensors_rust.SafetensorError: Error while deserializing header" \
        in failure.message
    assert len(failure.detail["traceback"]) <= 2


@pytest.mark.parametrize("exception_type, message", [
    ("torch.OutOfMemoryError", "Allocation on device "),
    ("torch.cuda.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB"),
    ("RuntimeError", "Allocation on device 0 would exceed allowed memory. (out of memory)"),
])
def test_out_of_memory_is_its_own_kind(exception_type: str, message: str) -> None:
    status = copy.deepcopy(history_entry("run_execution_error_corrupt_model_file.json")["status"])
    error = next(m[1] for m in status["messages"] if m[0] == "execution_error")
    error.update(exception_type=exception_type, exception_message=message, node_type="KSampler", node_id="3")
    failure = errors.execution_failed(errors.status_events(status), status, "http://gpu:8188", IDS)
    assert failure.kind == "out-of-memory"
    assert failure.message.startswith("out of GPU memory in KSampler (node 3)")


def test_interrupted_elsewhere_is_a_backend_error() -> None:
    entry = history_entry("queue_busy_delete_interrupt.json", "history_a_interrupted")
    failure = errors.execution_failed(errors.status_events(entry["status"]), entry["status"], "http://gpu:8188", IDS)
    assert failure.kind == "backend-error" and "interrupted on ComfyUI at http://gpu:8188" in failure.message


def test_render_time_and_image_come_from_the_history() -> None:
    entry = history_entry("run_basic_emptyimage_saveimage.json")
    assert errors.render_seconds(errors.status_events(entry["status"])) == 0.021  # 1795694510495 -> ...516
    assert errors.output_image(entry, "2", "u", IDS) == {"filename": "renderloop-basic_00001_.png",
                                                           "subfolder": "", "type": "output"}
    with pytest.raises(errors.RenderFailed, match="lists no image for node 9"):
        errors.output_image(entry, "9", "u", IDS)


def test_preflight_reads_both_combo_formats_of_object_info() -> None:
    info = load_object_info()
    assert errors.combo_options(info["VAELoader"], "vae_name") == ["pixel_space"]
    assert errors.combo_options(info["UpscaleModelLoader"], "model_name") == []  # the COMBO format
    assert errors.combo_options(info["KSampler"], "seed") is None
    graph = workflow_capture("flux-dev.api.json")
    lacks = errors.lacking(Graph(graph, "9"), {}, lambda name: info.get(name))
    assert lacks == ["ae.safetensors (VAELoader vae_name)", "clip_l.safetensors (DualCLIPLoader clip_name1)",
                     "flux1-dev.safetensors (UNETLoader unet_name)",
                     "t5xxl_fp16.safetensors (DualCLIPLoader clip_name2)"]
    unknown = errors.lacking(Graph({"1": {"class_type": "MyCustomNode", "inputs": {}}}, "1"), {}, lambda n: None)
    assert unknown == ["node type MyCustomNode"]
