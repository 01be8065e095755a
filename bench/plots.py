"""Draws BENCHMARKS.md's figures from one run of scripts/bench, as SVG files next to the report.

    python bench/plots.py --results target/bench/results.txt --latency target/bench/latency-http.txt \
        --drains target/bench/drain --out bench/plots

- `http-latency.svg`: the latency of `GET /echo` by percentile, the adapter against the plain
  server and `cargo lambda watch`, one panel per connection count (from wrk's whole distribution,
  which scripts/bench's wrk script prints after each run: `--latency` lines);
- `enqueue-ratio.svg`: enqueue req/s through the adapter over the raw SendMessage ceiling, per
  connection count: each round's ratio and their median, against the 80% goal (`bench enqueue` lines);
- `drain.svg`: tasks finished over time against the ideal, one panel per drain plan (`bench drain`
  lines and the timelines `observe --timeline` wrote to `--drains`).

A figure whose data the run did not record is left out with a message; the others are drawn. The
SVG files are reproducible (no date, fixed ids), so a re-run changes them only when the figures do.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

# The same target order and colours in every figure.
TARGETS = {"plain": "#4c72b0", "adapter": "#dd8452", "cargo-lambda-watch": "#55a868"}
TARGET_LABELS = {"plain": "plain hyper server (floor)", "adapter": "adapter http -- echo",
                 "cargo-lambda-watch": "cargo lambda watch"}
FILES = {"http_latency": "http-latency.svg", "enqueue_ratio": "enqueue-ratio.svg", "drain": "drain.svg"}
ENQUEUE_GOAL = 0.8
# A task of the drain sleeps this long (scripts/bench fills the queue with 1 s tasks).
TASK_SECONDS = 1.0


@dataclass
class Row:
    figure: str
    values: dict[str, str]

    def n(self, key: str) -> float | None:
        try:
            return float(self.values[key])
        except (KeyError, ValueError):
            return None


def parse_pairs(words: list[str]) -> dict[str, str]:
    return dict(w.split("=", 1) for w in words if "=" in w)


def read_results(path: str) -> list[Row]:
    """The `bench FIGURE key=value ...` lines of a results file (other lines are skipped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and words[0] == "bench":
                rows.append(Row(words[1], parse_pairs(words[2:])))
    return rows


def read_latency(path: str) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """`target=T conns=C percentile=P ms=M` lines -> (target, conns) -> [(percentile, ms)], sorted."""
    series: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            v = parse_pairs(line.split())
            try:
                series[(v["target"], int(v["conns"]))].append((float(v["percentile"]), float(v["ms"])))
            except (KeyError, ValueError):
                continue
    return {k: sorted(s) for k, s in series.items()}


def read_timeline(path: str) -> list[tuple[float, int]]:
    """`SECONDS DELETED` lines (observe --timeline): seconds from spawn, messages deleted so far."""
    points = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                try:
                    points.append((float(parts[0]), int(float(parts[1]))))
                except ValueError:
                    continue
    return points


def _style() -> None:
    plt.rcParams.update({
        "svg.hashsalt": "lambda-ecs-tasks",  # fixed element ids: the same figures give the same file
        "svg.fonttype": "none",  # text stays text: smaller files, the reader's fonts
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })


def _save(fig, path: str) -> None:
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def _nines(p: float) -> float:
    """Percentile -> x position: 1 / (1 - p), so 90, 99, 99.9 are evenly spaced on a log axis."""
    return 1.0 / max(1.0 - p / 100.0, 1e-6)


def plot_http_latency(latency: dict[tuple[str, int], list[tuple[float, float]]], path: str) -> bool:
    """Latency by percentile, one panel per connection count; False when there is nothing to draw."""
    conns = sorted({c for (_, c) in latency})
    if not conns:
        return False
    fig, axes = plt.subplots(1, len(conns), figsize=(5 * len(conns), 3.6), squeeze=False)
    ticks = [50.0, 90.0, 99.0, 99.9, 99.99]
    for ax, c in zip(axes[0], conns):
        for target, colour in TARGETS.items():
            points = [(p, ms) for p, ms in latency.get((target, c), []) if p < 100.0]
            if points:
                ax.plot([_nines(p) for p, _ in points], [ms for _, ms in points], color=colour,
                        label=TARGET_LABELS[target], linewidth=1.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator([_nines(p) for p in ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 * (1 - 1 / x):g}%"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_title(f"GET /echo, {c} connection{'s' if c != 1 else ''}")
        ax.legend(loc="upper left", frameon=False)
    fig.suptitle("HTTP latency distribution (wrk, same machine)", fontsize=10)
    _save(fig, path)
    return True


def enqueue_ratios(rows: list[Row]) -> dict[int, list[float]]:
    """Per connection count, each round's adapter req/s over the SDK's of the same round."""
    sdk = {(r.values.get("conns"), r.values.get("round")): r.n("rps")
           for r in rows if r.figure == "enqueue" and r.values.get("target") == "sdk-sendmessage"}
    ratios: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if r.figure != "enqueue" or r.values.get("target") != "adapter":
            continue
        a, s = r.n("rps"), sdk.get((r.values.get("conns"), r.values.get("round")))
        if a is not None and s:
            ratios[int(r.values["conns"])].append(a / s)
    return dict(sorted(ratios.items()))


def plot_enqueue_ratio(rows: list[Row], path: str) -> bool:
    ratios = enqueue_ratios(rows)
    if not ratios:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    xs = list(range(len(ratios)))
    medians = [statistics.median(v) for v in ratios.values()]
    ax.bar(xs, medians, width=0.55, color=TARGETS["adapter"], alpha=0.8, label="median of the rounds")
    for x, values in zip(xs, ratios.values()):
        ax.scatter([x] * len(values), values, color="black", s=14, zorder=3,
                   label="one round" if x == 0 else None)
    for x, m in zip(xs, medians):
        ax.annotate(f"{m:.2f}", (x, m), textcoords="offset points", xytext=(0, 4), ha="center")
    ax.axhline(ENQUEUE_GOAL, color="#c44e52", linestyle="--", linewidth=1, label=f"goal ({ENQUEUE_GOAL:.0%})")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(xs, [str(c) for c in ratios])
    ax.set_xlabel("connections")
    ax.set_ylabel("adapter req/s / raw SendMessage req/s")
    top = max(1.1, max(max(v) for v in ratios.values()) * 1.1)
    ax.set_ylim(0, top)
    ax.set_title("Enqueue throughput through the adapter, against the SDK ceiling", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    _save(fig, path)
    return True


def ideal_curve(tasks: int, in_flight: int, start: float, end: float) -> tuple[list[float], list[int]]:
    """Tasks finished if every wave of `in_flight` tasks took exactly TASK_SECONDS from `start`."""
    waves = math.ceil(tasks / in_flight)
    xs, ys = [0.0, start], [0, 0]
    for w in range(1, waves + 1):
        t = start + w * TASK_SECONDS
        xs.append(t)
        ys.append(min(tasks, w * in_flight))
    if xs[-1] < end:
        xs.append(end)
        ys.append(tasks)
    return xs, ys


def plot_drain(rows: list[Row], drains_dir: str, path: str) -> bool:
    plans = []
    for r in rows:
        if r.figure != "drain":
            continue
        timeline_path = os.path.join(drains_dir, f"{r.values.get('role', '')}.txt")
        if os.path.isfile(timeline_path):
            plans.append((r, read_timeline(timeline_path)))
    if not plans:
        return False
    columns = 2 if len(plans) > 1 else 1
    lines = math.ceil(len(plans) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.2 * lines), squeeze=False)
    for ax in axes.flat[len(plans):]:
        ax.set_visible(False)
    for ax, (r, timeline) in zip(axes.flat, plans):
        tasks = int(r.n("tasks") or 0)
        concurrency, batch = int(r.n("concurrency") or 1), int(r.n("batch") or 1)
        wall, ready = r.n("wall_s") or 0.0, r.n("ready_s") or 0.0
        in_flight = concurrency * batch
        end = max([wall] + [t for t, _ in timeline])
        ix, iy = ideal_curve(tasks, in_flight, ready, end)
        ax.step(ix, iy, where="post", color="grey", linestyle="--", linewidth=1.2,
                label=f"ideal: {in_flight} at a time, {TASK_SECONDS:g} s each")
        if timeline:
            ax.step([0.0] + [t for t, _ in timeline], [0] + [d for _, d in timeline], where="post",
                    color=TARGETS["adapter"], linewidth=1.6, label="finished (deleted)")
        ax.set_xlim(0, end * 1.02)
        ax.set_ylim(0, tasks * 1.05 if tasks else None)
        ax.set_xlabel("seconds since the worker started")
        ax.set_ylabel("tasks finished")
        ideal_s = tasks * TASK_SECONDS / in_flight if in_flight else 0.0
        ax.set_title(f"concurrency {concurrency}, batch {batch}: {wall:.2f} s (ideal {ideal_s:.2f} s)")
        ax.legend(loc="lower right", frameon=False, fontsize=8)
    fig.suptitle("Worker drain: tasks of 1 s, queued first, against the ideal", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def draw(results: str, latency: str | None, drains: str | None, out: str) -> dict[str, str]:
    """Draws every figure it has data for into `out`; returns figure -> file written."""
    _style()
    os.makedirs(out, exist_ok=True)
    rows = read_results(results)
    written = {}
    jobs = {
        "http_latency": lambda p: latency is not None and os.path.isfile(latency)
        and plot_http_latency(read_latency(latency), p),
        "enqueue_ratio": lambda p: plot_enqueue_ratio(rows, p),
        "drain": lambda p: drains is not None and os.path.isdir(drains) and plot_drain(rows, drains, p),
    }
    for figure, job in jobs.items():
        path = os.path.join(out, FILES[figure])
        if job(path):
            written[figure] = path
        else:
            print(f"plots: no data for {FILES[figure]}; left out", file=sys.stderr)
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="the run's results.txt (bench ... lines)")
    parser.add_argument("--latency", help="wrk latency percentiles (target= conns= percentile= ms=)")
    parser.add_argument("--drains", help="folder of drain timelines, <role>.txt (observe --timeline)")
    parser.add_argument("--out", required=True, help="folder for the SVG files")
    args = parser.parse_args(argv)
    for figure, path in draw(args.results, args.latency, args.drains, args.out).items():
        print(f"plots: {figure} -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
