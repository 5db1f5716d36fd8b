"""Model affinity (issue 11): which waiting image a lane takes, and the order `renderloop status` shows."""
from __future__ import annotations

from studio.batch import Job
from studio.order import completion_order, render_order
from tests.test_comfyui_backend import request
from win_side.affinity import Affinity
from win_side.backends.base import RenderRequest
from win_side.jobqueue import Item, JobQueue

MODELS = ("z-image-turbo", "flux-schnell")


def alternating(count: int, batch: str = "b1") -> list[RenderRequest]:
    return [request(f"img-{i:02d}", MODELS[i % 2], batch) for i in range(count)]


def drain(queue: JobQueue, lanes: list[str]) -> dict[str, list[str]]:
    """Lanes take turns until the queue is empty: what each took, in order."""
    taken: dict[str, list[str]] = {lane: [] for lane in lanes}
    while len(queue):
        for lane in lanes:
            item = queue.get(0, lane=lane)
            if item is not None:
                taken[lane].append(item.request.spec.model)
    return taken


def switches(models: list[str]) -> int:
    return sum(1 for before, after in zip([None, *models], models) if before != after)


def queue_of(requests: list[RenderRequest]) -> JobQueue:
    queue = JobQueue()
    for req in requests:
        queue.put(Item(req))
    return queue


def test_one_lane_renders_each_model_once_in_the_order_first_needed() -> None:
    taken = drain(queue_of(alternating(40)), ["gpu1"])["gpu1"]
    assert taken == ["z-image-turbo"] * 20 + ["flux-schnell"] * 20


def test_two_lanes_take_a_model_each() -> None:
    taken = drain(queue_of(alternating(40)), ["gpu1", "gpu2"])
    assert taken == {"gpu1": ["z-image-turbo"] * 20, "gpu2": ["flux-schnell"] * 20}


def test_a_second_lane_shares_a_single_model_rather_than_idle() -> None:
    queue = queue_of([request(f"img-{i}") for i in range(10)])
    taken = drain(queue, ["gpu1", "gpu2"])
    assert len(taken["gpu1"]) == len(taken["gpu2"]) == 5


def test_sharing_waits_for_a_load_to_pay_off() -> None:
    """A lane that ran out of its model takes another lane's only when that finishes sooner."""
    affinity = Affinity()
    for lane, model in (("gpu1", "z-image-turbo"), ("gpu2", "flux-schnell")):
        affinity.took(lane, request("x", model))
        affinity.measured(lane, 3.5, switched=True)
        affinity.measured(lane, 0.5, switched=False)
    few = [request(f"f{i}", "flux-schnell") for i in range(3)]
    assert affinity.choose("gpu1", few) is None  # 3 x 0.5 s < one 3 s load + a render: leave them to gpu2
    many = [request(f"f{i}", "flux-schnell") for i in range(12)]
    assert affinity.choose("gpu1", many) == 0  # 6 s of work: sharing finishes sooner


def test_an_image_the_server_holds_comes_first_and_a_released_model_is_free() -> None:
    affinity = Affinity()
    waiting = alternating(4)
    assert affinity.choose("gpu1", waiting, holds=lambda r: r.slug == "img-03") == 3
    affinity.took("gpu2", waiting[0])
    assert affinity.choose("gpu1", waiting) == 1  # z-image-turbo is gpu2's: the other model
    affinity.release("gpu2")
    assert affinity.choose("gpu1", waiting) == 0


def test_render_order_is_what_status_shows() -> None:
    runs = render_order([_job(r) for r in alternating(4, "b1")] + [_job(request("solo", "z-image-turbo", "b2"))])
    assert [(run.model, run.batches()) for run in runs] == [
        ("z-image-turbo", {"b1": 2, "b2": 1}), ("flux-schnell", {"b1": 2})]
    assert completion_order([job for run in runs for job in run.jobs]) == ["b2", "b1"]


def _job(req: RenderRequest) -> Job:
    return Job(req.batch, req.slug, req.spec, req.spec_hash, None, (), 1)
