"""The report's plots, drawn with matplotlib and embedded as inline SVG.

Each builder takes the measurements of one suite and returns a :class:`Plot`, or None when the
measurements it needs are not there (a gate run has no drain; a failed check may have recorded
nothing): a missing plot is never an error. Builders find their data by convention, not by
suite, so a suite that records the same kind of measurement gets the same picture:

- **share per step**: unit ``share`` or ``share`` in the name (the cutover suite's
  ``cutover_step_new_share``, unit ``ratio``) with context ``weight`` (the step's weight in
  percent) and, when recorded, ``step`` (its number) and ``decision`` (pass / fail / no
  verdict); the share is a fraction 0-1 with its interval in context ``low``/``high`` (or
  ``ci_low``/``ci_high``), and a tolerance, if recorded, in ``tolerance``.
- **latency per step and backend**: unit ``ms`` or ``s`` with contexts ``weight`` and
  ``backend`` (``cutover_step_latency_p50/p95/p99``); one line per backend and percentile.
- **availability against the budget**: a timeline (unit ``pods`` with context ``t``) when a
  check records one, else ``min_availability`` with contexts ``budget`` and ``replicas``.
- **node count while scaling**: ``node_count`` with context ``t`` (and ``ready``).
- **DNS latency per node**: ``dns_latency_*`` with context ``node``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from clustergate.report.history import Comparison, Direction, SeriesKey
from clustergate.report.measurements import Point

WIDTH_IN = 10.0
STYLE = {
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "clustergate",
    #: Text stays text: the page is smaller, and labels can be searched and copied.
    "svg.fonttype": "none",
}
INTERVAL_KEYS = (("low", "high"), ("ci_low", "ci_high"), ("lower", "upper"))
TIME_UNITS = ("ms", "s")
#: Colour of a cutover step's point by its ``decision`` context (clustergate.stats.Verdict).
DECISION_COLOURS = {"pass": "tab:blue", "fail": "tab:red", "no verdict": "tab:orange"}
TRENDS_MAX = 12
TITLE_CHARS = 48
TREND_ROW_IN = 2.0
#: The series a trend plot shows first, after the regressions; the table lists every series.
KEY_SERIES = (
    "dns_latency_p99",
    "time_to_capacity",
    "time_to_shrink",
    "drain_duration",
    "upgrade_duration",
    "cutover_step_latency_p99",
    "dns_restart_gap",
    "irsa_seconds_to_credentials",
)


@dataclass(frozen=True)
class Plot:
    title: str
    caption: str
    svg: str
    kind: str


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _draw(height_in: float, draw: Callable[[Figure], None], *, layout: bool = True) -> str:
    """``layout=False`` skips matplotlib's layout engine (slow with many axes): ``draw`` then
    places its axes itself."""
    with rc_context(STYLE):
        figure = Figure(figsize=(WIDTH_IN, height_in), layout="constrained" if layout else None)
        draw(figure)
        return _svg(figure)


def _steps(found: Sequence[Point]) -> tuple[dict[tuple[float, float, bool], int], list[str]]:
    """x positions of cutover steps and their labels: by step number when recorded (two steps
    may share a weight), by weight otherwise."""
    steps = sorted({_step(p) for p in found})
    labels = [
        f"step {order:g}\n{weight:g}%" if numbered else f"{weight:g}%"
        for order, weight, numbered in steps
    ]
    return {step: index for index, step in enumerate(steps)}, labels


def _step(point: Point) -> tuple[float, float, bool]:
    """(order, weight, whether the order is a step number)."""
    weight = point.number("weight") or 0.0
    number = point.number("step")
    return (weight, weight, False) if number is None else (number, weight, True)


def _decision_colour(point: Point) -> str:
    return DECISION_COLOURS.get(point.context.get("decision", ""), "tab:blue")


def share_per_step(found: Sequence[Point]) -> Plot | None:
    shares = [
        p
        for p in found
        if p.number("weight") is not None and (p.unit == "share" or "share" in p.name)
    ]
    if not shares:
        return None
    where, labels = _steps(shares)

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        axes.hlines(
            [weight for _, weight, _ in where],
            [x - 0.25 for x in where.values()],
            [x + 0.25 for x in where.values()],
            colors="black",
            linewidths=2,
            label="weight (target)",
            zorder=3,
        )
        for p in shares:
            x, y = where[_step(p)], 100 * p.value
            low, high = _interval(p)
            error = None if low is None or high is None else [[max(0, y - low)], [max(0, high - y)]]
            axes.errorbar(
                [x], [y], yerr=error, fmt="o", color=_decision_colour(p), capsize=6, zorder=4
            )
            tolerance = p.number("tolerance")
            if tolerance is not None:
                weight = p.number("weight") or 0.0
                axes.fill_between(
                    [x - 0.3, x + 0.3],
                    weight - 100 * tolerance,
                    weight + 100 * tolerance,
                    color="tab:green",
                    alpha=0.15,
                    zorder=1,
                )
        axes.plot([], [], "o", color="tab:blue", label="observed share with its interval")
        for decision in sorted(
            {p.context.get("decision", "") for p in shares} & set(DECISION_COLOURS)
        ):
            if decision != "pass":
                axes.plot([], [], "o", color=DECISION_COLOURS[decision], label=f"step: {decision}")
        axes.set_xticks(list(where.values()), labels)
        axes.set_xlabel("cutover step (weight of the new cluster)")
        axes.set_ylabel("share of requests served by new (%)")
        axes.set_ylim(-5, 105)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)

    return Plot(
        "Traffic share per cutover step",
        "Observed share of the new cluster at each step with its confidence interval, against "
        "the step's weight (black); red: a step that failed, orange: no verdict.",
        _draw(3.4, draw),
        "share",
    )


def _interval(point: Point) -> tuple[float | None, float | None]:
    for low_key, high_key in INTERVAL_KEYS:
        low, high = point.number(low_key), point.number(high_key)
        if low is not None and high is not None:
            return 100 * low, 100 * high
    return None, None


def _percentile(name: str) -> str:
    """``cutover_step_latency_p95`` -> ``p95``; other names stay whole."""
    last = name.rsplit("_", 1)[-1]
    return last if last[:1] == "p" and last[1:].isdigit() else name


def latency_per_step(found: Sequence[Point]) -> Plot | None:
    latencies = [
        p
        for p in found
        if p.unit in TIME_UNITS
        and "backend" in p.context
        and p.number("weight") is not None
        and "t" not in p.context
    ]
    if not latencies:
        return None
    unit = "ms" if any(p.unit == "ms" for p in latencies) else "s"
    scale = {"ms": 1.0, "s": 1000.0} if unit == "ms" else {"ms": 0.001, "s": 1.0}
    where, labels = _steps(latencies)
    lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for p in latencies:
        lines.setdefault((p.context["backend"], p.name), []).append(
            (where[_step(p)], p.value * scale[p.unit])
        )
    backends = sorted({backend for backend, _ in lines})
    colours = {backend: f"C{index}" for index, backend in enumerate(backends)}
    names = sorted({name for _, name in lines})
    markers = dict(zip(names, "os^Dv<>p*", strict=False))

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        for (backend, name), values in sorted(lines.items()):
            values.sort()
            axes.plot(
                [x for x, _ in values],
                [y for _, y in values],
                marker=markers.get(name, "o"),
                color=colours[backend],
                label=f"{backend} {_percentile(name)}",
            )
        axes.set_xticks(list(where.values()), labels)
        axes.set_xlabel("cutover step (weight of the new cluster)")
        axes.set_ylabel(f"latency ({unit})")
        axes.set_ylim(0, 1.1 * max(y for values in lines.values() for _, y in values) or 1)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)

    return Plot(
        "Latency per cutover step and backend",
        "Each latency the cutover recorded per step, one colour per backend.",
        _draw(3.4, draw),
        "latency",
    )


def availability(found: Sequence[Point]) -> Plot | None:
    timelines: dict[str, list[Point]] = {}
    for p in found:
        if p.unit == "pods" and p.number("t") is not None:
            timelines.setdefault(p.test_name, []).append(p)
    if timelines:
        return _availability_timeline(timelines)
    lowest = [p for p in found if p.name == "min_availability" and p.number("budget") is not None]
    return _availability_minimum(lowest) if lowest else None


def _availability_timeline(timelines: dict[str, list[Point]]) -> Plot:
    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        for index, (check, samples) in enumerate(sorted(timelines.items())):
            samples.sort(key=lambda p: p.number("t") or 0.0)
            colour = f"C{index}"
            axes.step(
                [p.number("t") for p in samples],
                [p.value for p in samples],
                where="post",
                color=colour,
                label=f"{check}: available pods",
            )
            budget = next((b for p in samples if (b := p.number("budget")) is not None), None)
            if budget is not None:
                axes.axhline(budget, color=colour, linestyle="--", label=f"{check}: budget")
        axes.set_xlabel("time since the watch started (s)")
        axes.set_ylabel("available pods")
        axes.set_ylim(bottom=0)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)

    return Plot(
        "Availability against the budget",
        "Available pods over time while nodes went away; dashed: the PodDisruptionBudget's "
        "minimum. A line below its budget is a broken budget.",
        _draw(3.2, draw),
        "availability",
    )


def _availability_minimum(lowest: list[Point]) -> Plot:
    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        rows = list(range(len(lowest)))
        replicas = [p.number("replicas") for p in lowest]
        if all(n is not None for n in replicas):
            axes.barh(rows, replicas, height=0.6, color="#e5e7ea", label="replicas")
        below = [p.value < (p.number("budget") or 0.0) for p in lowest]
        axes.barh(
            rows,
            [p.value for p in lowest],
            height=0.36,
            color=["tab:red" if b else "tab:blue" for b in below],
            label="lowest available",
        )
        axes.vlines(
            [p.number("budget") for p in lowest],
            [row - 0.4 for row in rows],
            [row + 0.4 for row in rows],
            colors="black",
            linewidths=2.5,
            label="budget (minAvailable)",
        )
        for row, p in zip(rows, lowest, strict=True):
            axes.annotate(
                f"lowest {p.value:g} / budget {p.number('budget'):g}",
                (0, row),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                color="white",
                fontsize=8,
            )
        axes.set_yticks(rows, [p.test_name for p in lowest])
        axes.set_xlabel("available pods")
        axes.set_xlim(left=0)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)

    return Plot(
        "Lowest availability against the budget",
        "The fewest available pods seen during the disruption (blue; red when below the "
        "budget) against the PodDisruptionBudget's minimum (black) and the replicas (grey).",
        _draw(0.8 + 0.55 * len(lowest), draw),
        "availability",
    )


def node_count(found: Sequence[Point]) -> Plot | None:
    samples = sorted(
        (p for p in found if p.name == "node_count" and p.number("t") is not None),
        key=lambda p: p.number("t") or 0.0,
    )
    if not samples:
        return None
    times = [p.number("t") or 0.0 for p in samples]

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        axes.step(times, [p.value for p in samples], where="post", marker="o", label="nodes")
        ready = [p.number("ready") for p in samples]
        if all(value is not None for value in ready):
            axes.step(times, ready, where="post", linestyle="--", label="Ready nodes")
        axes.set_xlabel("time since the check started (s)")
        axes.set_ylabel("nodes")
        axes.yaxis.get_major_locator().set_params(integer=True)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)

    return Plot(
        "Node count while scaling",
        "Nodes in the cluster while pending pods made it grow and idle nodes made it shrink.",
        _draw(3.0, draw),
        "node_count",
    )


def _short_node(name: str) -> str:
    return name.split(".", 1)[0]


def dns_latency_per_node(found: Sequence[Point]) -> Plot | None:
    latencies = [
        p
        for p in found
        if p.name.startswith("dns_latency_") and "node" in p.context and p.unit in TIME_UNITS
    ]
    if not latencies:
        return None
    nodes = sorted({p.context["node"] for p in latencies})
    names = sorted({p.name for p in latencies})
    height = 0.8 / len(names)

    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        for index, name in enumerate(names):
            values = {
                p.context["node"]: p.value * (1000 if p.unit == "s" else 1)
                for p in latencies
                if p.name == name
            }
            rows = [row + (index - (len(names) - 1) / 2) * height for row in range(len(nodes))]
            bars = axes.barh(
                rows,
                [values.get(node, 0.0) for node in nodes],
                height=height,
                label=name.removeprefix("dns_latency_"),
            )
            axes.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        axes.set_yticks(range(len(nodes)), [_short_node(node) for node in nodes])
        axes.invert_yaxis()
        axes.set_xlabel("resolution latency through the node's cache (ms)")
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)

    return Plot(
        "DNS latency per node",
        "Latency percentiles of the queries a probe pod on each node sent to its NodeLocal "
        "DNSCache.",
        _draw(0.7 + 0.3 * len(nodes) * len(names), draw),
        "dns_latency",
    )


SUITE_PLOTS: tuple[Callable[[Sequence[Point]], Plot | None], ...] = (
    share_per_step,
    latency_per_step,
    availability,
    node_count,
    dns_latency_per_node,
)


def suite_plots(found: Iterable[Point]) -> list[Plot]:
    found = list(found)
    return [plot for build in SUITE_PLOTS if (plot := build(found)) is not None]


def _trend_axes(axes: Axes, comparison: Comparison) -> None:
    earlier = [value for _, value in comparison.earlier]
    xs = list(range(len(earlier) + 1))
    axes.plot(xs[:-1], earlier, marker="o", color="tab:gray", markersize=4)
    axes.plot(
        [xs[-1]],
        [comparison.value],
        marker="o",
        color="tab:red" if comparison.regressed else "tab:blue",
        markersize=7,
    )
    axes.axhline(comparison.median, color="tab:gray", linestyle=":", linewidth=1)
    if comparison.worse_by is not None:
        limit = (
            comparison.median * comparison.limit
            if comparison.direction is Direction.LOWER_IS_BETTER
            else comparison.median / comparison.limit
        )
        axes.axhline(limit, color="tab:red", linestyle="--", linewidth=1)
    axes.set_title(_shorten(comparison.key.label(), TITLE_CHARS), fontsize=8)
    axes.set_xticks(xs, [""] * len(earlier) + ["this run"], fontsize=7)
    axes.set_ylabel(comparison.key.unit)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _trend_rank(comparison: Comparison) -> tuple[bool, int, SeriesKey]:
    name = comparison.key.name
    key = KEY_SERIES.index(name) if name in KEY_SERIES else len(KEY_SERIES)
    return (not comparison.regressed, key, comparison.key)


def trends(comparisons: Sequence[Comparison]) -> Plot | None:
    """Small multiples of the compared series: regressions, then the key measurements."""
    if not comparisons:
        return None
    shown = sorted(comparisons, key=_trend_rank)[:TRENDS_MAX]
    columns = min(3, len(shown))
    rows = (len(shown) + columns - 1) // columns

    height = TREND_ROW_IN * rows

    def draw(figure: Figure) -> None:
        figure.subplots_adjust(
            left=0.07,
            right=0.98,
            top=1 - 0.4 / height,
            bottom=0.3 / height,
            wspace=0.35,
            hspace=0.75,
        )
        for index, comparison in enumerate(shown):
            _trend_axes(figure.add_subplot(rows, columns, index + 1), comparison)

    hidden = len(comparisons) - len(shown)
    return Plot(
        "Trends against earlier runs",
        "Each series over the earlier runs (grey) and this run (blue; red when it regressed); "
        "dotted: the median of the earlier runs; dashed: the regression limit."
        + (f" {hidden} more series are in the table below." if hidden else ""),
        _draw(height, draw, layout=False),
        "trends",
    )
