"""Model affinity: which waiting image a lane takes next, so that GPUs switch models as little as possible.

Loading a model's weights costs more than rendering with it (about 30 s on
an 8 GB card, against 17.8 s for a warm Z-Image Turbo image), so a lane (one
ComfyUI server) renders everything waiting for the model it has loaded
before it switches.  The rule, for a lane asking for its next image:

1. an image its server already holds (a prompt re-attached after a restart);
2. else the first image of the model the lane has loaded;
3. else the first image of a model no other lane has loaded, taking the
   models in the order their first image waits (``studio.order``: the order
   ``renderloop status`` shows): someone has to load it, and nobody else will;
4. else the model another lane is on that has the most waiting per lane
   on it, when sharing it finishes sooner than leaving it to them: the
   waiting renders, spread over the lanes on it, outlast one load and one
   render here.  Until a lane has measured a load and a render, it shares
   (a lane never idles on a guess).

A lane that backs off (its server is down) releases its model, so its
images are not held for it.  ``RENDERLOOP_AFFINITY=off`` in the worker's
environment turns all this off (file order, the first free lane takes the
next image): for the benchmarks' comparison, and a way out should the rule
ever misbehave on some machine.  Pure bookkeeping under the queue's lock; the
measurements come from the renders themselves (a switch's render time
includes the load).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from studio.order import model_order
from win_side.backends.base import RenderRequest

SMOOTHING = 0.3  # weight of a new measurement in the running estimates


@dataclass
class LaneState:
    model: Optional[str] = None  # the model of the last image it took: the one its server has loaded
    render: Optional[float] = None  # seconds an image takes with the model loaded
    switch: Optional[float] = None  # seconds an image takes when its model must be loaded first

    @property
    def load(self) -> Optional[float]:
        """Seconds a switch adds, once both kinds of render were measured."""
        if self.render is None or self.switch is None:
            return None
        return max(0.0, self.switch - self.render)


def model_of(request: RenderRequest) -> str:
    return request.spec.model


class Affinity:
    def __init__(self, enabled: Optional[bool] = None) -> None:
        self.lanes: dict[str, LaneState] = {}
        self.enabled = os.environ.get("RENDERLOOP_AFFINITY", "on").lower() != "off" if enabled is None else enabled

    def state(self, lane: str) -> LaneState:
        return self.lanes.setdefault(lane, LaneState())

    def choose(self, lane: str, waiting: Sequence[RenderRequest],
               accept: Optional[Callable[[RenderRequest], bool]] = None,
               holds: Optional[Callable[[RenderRequest], bool]] = None) -> Optional[int]:
        """The index in ``waiting`` of the image ``lane`` takes next, or None (leave them to the others)."""
        me = self.state(lane)
        usable = [i for i, request in enumerate(waiting) if accept is None or accept(request)]
        if not usable:
            return None
        if not self.enabled:
            return usable[0]
        if holds is not None:
            held = next((i for i in usable if holds(waiting[i])), None)
            if held is not None:
                return held
        mine = next((i for i in usable if model_of(waiting[i]) == me.model), None)
        if mine is not None:
            return mine
        first: dict[str, int] = {}
        count: dict[str, int] = {}
        for i in usable:
            model = model_of(waiting[i])
            first.setdefault(model, i)
            count[model] = count.get(model, 0) + 1
        on = {model: sum(1 for name, other in self.lanes.items() if name != lane and other.model == model)
              for model in first}
        free = [model for model in model_order(model_of(waiting[i]) for i in usable) if not on[model]]
        if free:
            return first[free[0]]
        best = max(first, key=lambda model: (count[model] / on[model], -first[model]))
        return first[best] if self._worth_sharing(me, count[best], on[best]) else None

    def _worth_sharing(self, me: LaneState, waiting: int, lanes_on_it: int) -> bool:
        render = me.render if me.render is not None else self._known("render")
        load = me.load if me.load is not None else self._known("load")
        if render is None or load is None:
            return True
        return waiting * render / lanes_on_it > load + render

    def _known(self, what: str) -> Optional[float]:
        values = [getattr(state, what) for state in self.lanes.values() if getattr(state, what) is not None]
        return sum(values) / len(values) if values else None

    def took(self, lane: str, request: RenderRequest) -> bool:
        """``lane`` took ``request``; True when that makes its server switch models."""
        me = self.state(lane)
        switched = me.model != model_of(request)
        me.model = model_of(request)
        return switched

    def measured(self, lane: str, seconds: float, switched: bool) -> None:
        """A render on ``lane`` took ``seconds`` (by the server's clock), with a model switch or not."""
        me = self.state(lane)
        if switched:
            me.switch = _smooth(me.switch, seconds)
        else:
            me.render = _smooth(me.render, seconds)

    def release(self, lane: str) -> None:
        """``lane`` stopped taking images for a while (its server is down): its model is nobody's."""
        self.state(lane).model = None


def _smooth(old: Optional[float], new: float) -> float:
    return new if old is None else old + SMOOTHING * (new - old)
