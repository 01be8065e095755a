"""bench/plots.py draws BENCHMARKS.md's figures from a run's data (here: a small sample of it).

The sample in data/ is the shape scripts/bench records: results.txt lines taken from a real run
(BENCHMARKS.md's raw lines), wrk latency percentiles, and drain timelines as observe writes them.
"""

from __future__ import annotations

import os
import shutil
import sys
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import plots  # noqa: E402

DATA = os.path.join(HERE, "data")
RESULTS = os.path.join(DATA, "results.txt")
LATENCY = os.path.join(DATA, "latency-http.txt")
DRAINS = os.path.join(DATA, "drain")
SVG = "{http://www.w3.org/2000/svg}"


def texts(path: str) -> str:
    """Every text of an SVG file (plots.py keeps text as text), joined."""
    return " ".join(t for e in ET.parse(path).getroot().iter(f"{SVG}text") for t in e.itertext())


def test_draws_the_three_figures_from_a_run(tmp_path):
    written = plots.draw(RESULTS, LATENCY, DRAINS, str(tmp_path))
    assert written == {figure: str(tmp_path / name) for figure, name in plots.FILES.items()}
    latency = texts(written["http_latency"])
    for label in ("plain hyper server", "adapter http -- echo", "cargo lambda watch", "1 connection",
                  "64 connections", "99.9%"):
        assert label in latency, label
    ratio = texts(written["enqueue_ratio"])
    # The medians of the sample's three rounds per connection count (as in BENCHMARKS.md).
    for label in ("0.74", "0.86", "1.06", "goal (80%)", "16", "64"):
        assert label in ratio, label
    drain = texts(written["drain"])
    for label in ("concurrency 10, batch 1: 101.03 s (ideal 100.00 s)", "concurrency 100, batch 10",
                  "ideal: 1000 at a time"):
        assert label in drain, label


def test_the_svg_files_are_reproducible(tmp_path):
    first = plots.draw(RESULTS, LATENCY, DRAINS, str(tmp_path / "a"))
    second = plots.draw(RESULTS, LATENCY, DRAINS, str(tmp_path / "b"))
    for figure in first:
        with open(first[figure], "rb") as a, open(second[figure], "rb") as b:
            assert a.read() == b.read(), figure


def test_a_figure_without_data_is_left_out_and_the_others_drawn(tmp_path, capsys):
    drains = tmp_path / "drain"
    shutil.copytree(DRAINS, drains)
    os.remove(drains / "sqs-sleep-c10-b1.txt")  # one plan's timeline missing: that panel only
    results = tmp_path / "results.txt"
    results.write_text("".join(line for line in open(RESULTS) if not line.startswith("bench enqueue")))
    written = plots.draw(str(results), str(tmp_path / "no-latency.txt"), str(drains), str(tmp_path / "out"))
    assert set(written) == {"drain"}
    assert "concurrency 10, batch 1" not in texts(written["drain"])
    err = capsys.readouterr().err
    assert "no data for http-latency.svg" in err and "no data for enqueue-ratio.svg" in err


def test_enqueue_ratios_pair_each_adapter_run_with_the_sdk_run_of_its_round():
    rows = [plots.Row("enqueue", v) for v in (
        {"target": "sdk-sendmessage", "conns": "16", "round": "2", "rps": "500"},
        {"target": "adapter", "conns": "16", "round": "1", "rps": "500"},
        {"target": "sdk-sendmessage", "conns": "16", "round": "1", "rps": "600"},
        {"target": "adapter", "conns": "16", "round": "2", "rps": "550"},
        {"target": "adapter", "conns": "1", "round": "1", "rps": "-"},  # wrk could not connect
    )]
    assert plots.enqueue_ratios(rows) == {16: [500 / 600, 550 / 500]}


def test_ideal_drain_finishes_a_wave_every_task_length_from_ready():
    xs, ys = plots.ideal_curve(tasks=250, in_flight=100, start=0.5, end=4.0)
    assert list(zip(xs, ys)) == [(0.0, 0), (0.5, 0), (1.5, 100), (2.5, 200), (3.5, 250), (4.0, 250)]


def test_the_command_writes_into_out(tmp_path):
    assert plots.main(["--results", RESULTS, "--latency", LATENCY, "--drains", DRAINS, "--out", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(plots.FILES.values())


@pytest.mark.parametrize("line", ["garbage", "target=plain conns=x percentile=50 ms=1", ""])
def test_latency_lines_it_cannot_read_are_skipped(tmp_path, line):
    path = tmp_path / "latency.txt"
    path.write_text(f"{line}\ntarget=plain conns=1 percentile=50 ms=0.1\n")
    assert plots.read_latency(str(path)) == {("plain", 1): [(50.0, 0.1)]}
