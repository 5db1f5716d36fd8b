"""The four figures of issue 3, gathered while the benchmarks run and summed up at the end."""
from __future__ import annotations

from dataclasses import dataclass, field

from tests.bench.harness import GpuSide, median

GOAL_DISPATCH = 0.3  # s, push -> first POST /prompt, watched bare remote
GOAL_GAP = 0.010  # s, median GPU idle gap between consecutive images
GOAL_OVERHEAD = 0.01  # batch wall time minus total render time, over total render time
GOAL_SCALING = 1.9  # throughput of two servers over one


@dataclass
class BatchRun:
    """One batch pushed to a continuous worker and rendered to the end (times on the wall clock)."""

    servers: int
    images: int
    pushed: float  # the person's git push ended (t0)
    first_prompt: float  # the first POST /prompt of the batch reached a server
    completed: float  # the push that put the batch's last render commit on the remote
    gpu: list[GpuSide]  # per server

    @property
    def render_total(self) -> float:
        """Sum of every image's execution time, all servers."""
        return sum(sum(g.durations) for g in self.gpu)

    @property
    def gpu_span(self) -> float:
        """First image start to last image end, any server."""
        used = [g for g in self.gpu if g.durations]
        return max(g.last_end for g in used) - min(g.first_start for g in used)

    @property
    def gpu_overhead(self) -> float:
        """Per server, busy span minus its renders: summed, over the renders (idle GPU time, relative)."""
        return sum(g.span - sum(g.durations) for g in self.gpu if g.durations) / self.render_total

    @property
    def lead(self) -> float:
        """Push -> the first image starts on a server."""
        return min(g.first_start for g in self.gpu if g.durations) - self.pushed

    @property
    def tail(self) -> float:
        """The last image ends -> its commit is on the remote."""
        return self.completed - max(g.last_end for g in self.gpu if g.durations)

    @property
    def mean_render(self) -> float:
        return self.render_total / self.images

    @property
    def end_to_end(self) -> float:
        return self.completed - self.pushed

    @property
    def end_to_end_overhead(self) -> float:
        """(push -> last render commit on the remote) minus the render time per server, over the latter."""
        per_server = self.render_total / self.servers
        return (self.end_to_end - per_server) / per_server

    @property
    def gaps(self) -> list[float]:
        return [gap for g in self.gpu for gap in g.gaps]


@dataclass
class SwitchRun:
    """Issue 11: one batch alternating models, on servers that charge a load per model switch."""

    order: str  # "affine" or "file"
    servers: int
    images: int
    models: int
    load: float  # s per switch, as the servers charge it
    switches: list[int]  # per server: executions that loaded a model (the first load counts)
    images_per_server: list[int]
    render: float  # median execution without a load
    span: float  # first start to last end, all servers (wall clock)
    end_to_end: float  # push -> the last render commit on the remote

    @classmethod
    def of(cls, order: str, servers: int, images: int, models: int, load: float,
           executions: list[list[tuple]], pushed: float, completed: float,
           timelines: list[list[tuple[str, float, float]]]) -> "SwitchRun":
        plain = [end - start for rows in executions for _, start, end, _, switched in rows if not switched]
        starts = [start for rows in timelines for _, start, _ in rows]
        ends = [end for rows in timelines for _, _, end in rows]
        return cls(order, servers, images, models, load,
                   switches=[sum(1 for row in rows if row[4]) for rows in executions],
                   images_per_server=[len(rows) for rows in executions],
                   render=median(plain), span=max(ends) - min(starts), end_to_end=completed - pushed)

    @property
    def ideal(self) -> float:
        """Every render plus one load per model, spread over the servers."""
        return (self.images * self.render + self.models * self.load) / self.servers

    @property
    def over(self) -> float:
        return (self.span - self.ideal) / self.ideal


@dataclass
class Results:
    dispatch: dict[str, list[float]] = field(default_factory=dict)  # "watch"/"poll" -> latencies (s)
    batches: dict[int, list[BatchRun]] = field(default_factory=dict)  # servers -> runs
    switches: list[SwitchRun] = field(default_factory=list)
    load_before: str = ""


RESULTS = Results()


def _verdict(ok: bool) -> str:
    return "goal met" if ok else "GOAL MISSED"


def summary() -> list[str]:
    lines: list[str] = []
    for mode, label in (("watch", "watched bare remote"), ("poll", "ls-remote polling, --poll 2")):
        values = RESULTS.dispatch.get(mode)
        if values:
            med, top = median(values), max(values)
            goal = f"  [{_verdict(med < GOAL_DISPATCH and top < GOAL_DISPATCH)}: < 300 ms]" if mode == "watch" else ""
            lines.append(f"1. push -> first /prompt, {label}: median {med * 1000:.0f} ms, "
                         f"max {top * 1000:.0f} ms over {len(values)} pushes{goal}")
    one, two = RESULTS.batches.get(1, []), RESULTS.batches.get(2, [])
    for servers, runs in ((1, one), (2, two)):
        if not runs:
            continue
        gaps = [gap for run in runs for gap in run.gaps]
        gap = median(gaps)
        goal = f"  [{_verdict(gap < GOAL_GAP)}: < 10 ms]" if servers == 1 else ""
        lines.append(f"2. GPU idle gap, {servers} server(s), window 2: median {gap * 1000:.2f} ms, "
                     f"max {max(gaps) * 1000:.1f} ms over {len(gaps)} gaps{goal}")
    for servers, runs in ((1, one), (2, two)):
        if not runs:
            continue
        gpu = median([r.gpu_overhead for r in runs])
        e2e = median([r.end_to_end_overhead for r in runs])
        goal = f"  [GPU side {_verdict(gpu < GOAL_OVERHEAD)}: < 1 %]" if servers == 1 else ""
        lines.append(
            f"3. {runs[0].images} images, {servers} server(s): GPU side (span - renders) / renders "
            f"{gpu * 100:.2f} %; end to end (push -> last render commit on the remote) "
            f"{median([r.end_to_end for r in runs]):.2f} s vs {median([r.render_total for r in runs]) / servers:.2f} s "
            f"of renders per server = {e2e * 100:+.2f} %{goal}")
    if one and two:
        gpu_ratio = median([r.gpu_span for r in one]) / median([r.gpu_span for r in two])
        e2e_ratio = median([r.end_to_end for r in one]) / median([r.end_to_end for r in two])
        lines.append(f"4. throughput, two servers over one: GPU side {gpu_ratio:.3f}x, end to end {e2e_ratio:.3f}x"
                     f"  [{_verdict(e2e_ratio >= GOAL_SCALING)}: >= 1.9x]")
    for run in sorted(RESULTS.switches, key=lambda r: (r.servers, r.order)):
        goal = (f"  [{_verdict(max(run.switches) <= run.models and run.over <= 0.03)}: switches <= models, "
                f"<= 3 % over]" if run.order == "affine" else "")
        lines.append(f"5. {run.images} images alternating {run.models} models, {run.servers} server(s), "
                     f"{run.order} order: switches per server {run.switches}, GPU span {run.span:.2f} s vs "
                     f"{run.ideal:.2f} s necessary ({run.over * 100:+.2f} %), end to end {run.end_to_end:.2f} s{goal}")
    return lines
