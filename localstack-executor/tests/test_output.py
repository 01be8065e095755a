"""OutputRouter: each invocation's lines, from one pipe carrying the whole environment's output."""

import threading

from lambda_process_executor.output import PENDING_LINES, OutputRouter


def feed(router, *lines):
    for line in lines:
        router.feed(line + "\n")


def test_lines_between_start_and_report_belong_to_the_invocation():
    router = OutputRouter()
    feed(router, "START RequestId: a Version: $LATEST", "hello", "END RequestId: a",
         "REPORT RequestId: a\tDuration: 1.00 ms")
    assert router.take("a", timeout=0) == (
        "START RequestId: a Version: $LATEST\nhello\nEND RequestId: a\n"
        "REPORT RequestId: a\tDuration: 1.00 ms\n")
    # Taken once: a second take finds nothing.
    assert router.take("a", timeout=0) == ""


def test_output_between_invocations_leads_the_next_one():
    router = OutputRouter()
    feed(router, "init line", "START RequestId: a", "REPORT RequestId: a", "background line",
         "START RequestId: b", "in b", "REPORT RequestId: b")
    assert router.take("a", timeout=0).splitlines() == ["init line", "START RequestId: a", "REPORT RequestId: a"]
    assert router.take("b", timeout=0).splitlines() == [
        "background line", "START RequestId: b", "in b", "REPORT RequestId: b"]


def test_a_report_of_another_id_does_not_end_the_invocation():
    router = OutputRouter()
    feed(router, "START RequestId: a", "REPORT RequestId: zzz", "still a", "REPORT RequestId: a")
    assert "still a" in router.take("a", timeout=0)


def test_take_waits_for_the_report_line():
    router = OutputRouter()
    feed(router, "START RequestId: a", "working")
    later = threading.Timer(0.05, lambda: feed(router, "REPORT RequestId: a"))
    later.start()
    assert router.take("a", timeout=10).endswith("REPORT RequestId: a\n")
    later.join()


def test_a_dead_process_gives_what_was_seen():
    router = OutputRouter()
    feed(router, "START RequestId: a", "last words")
    router.close()
    assert router.take("a", timeout=10).splitlines() == ["START RequestId: a", "last words"]


def test_output_outside_invocations_is_bounded():
    router = OutputRouter()
    for i in range(PENDING_LINES * 3):
        router.feed(f"noise {i}\n")
    feed(router, "START RequestId: a", "REPORT RequestId: a")
    lines = router.take("a", timeout=0).splitlines()
    assert len(lines) == PENDING_LINES + 2
    assert lines[0] == f"noise {PENDING_LINES * 2}"
    assert "noise 0" not in router.history()
