"""`flush_report()`: flush, then what became of the messages since the last report — the
answer `flush()`'s True does not give (True also when a wrong key got everything rejected, or
when the collector is down and the spool kept it all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collector import Collector

import analytics


def _track(client: Any, n: int) -> None:
    for i in range(n):
        assert client.track(f"u{i}", "Report Tested")[0]


def test_a_delivered_flush_counts_what_arrived_and_the_next_report_starts_from_there(
    make_client: Any, collector: Collector
) -> None:
    client = make_client()
    _track(client, 5)
    report = client.flush_report(timeout=5)
    assert report and report.complete
    assert (report.queued, report.delivered, report.dropped, report.spooled, report.pending) == (
        5, 5, 0, 0, 0,
    )
    assert collector.message_count() == 5
    assert client.flush_report(timeout=5) == analytics.FlushReport(
        True, dropped_by_reason=dict.fromkeys(report.dropped_by_reason or {}, 0)
    )


def test_a_wrong_key_flushes_true_but_the_report_says_rejected(
    make_client: Any, collector: Collector, errors: Any
) -> None:
    collector.fail(401)
    client = make_client()
    _track(client, 3)
    report = client.flush_report(timeout=5)
    assert report  # settled: every message was answered, and reported to on_error
    assert report.delivered == 0 and report.dropped == 3
    assert report.dropped_by_reason == {**dict.fromkeys(report.dropped_by_reason or {}, 0),
                                        "rejected": 3}
    assert len(errors.message_ids()) == 3


def test_with_the_collector_down_and_a_spool_the_report_says_spooled(
    make_client: Any, down_collector: Collector, tmp_path: Path
) -> None:
    client = make_client(host=down_collector.url, spool_path=str(tmp_path / "spool.db"),
                         max_retries=0)
    _track(client, 4)
    report = client.flush_report(timeout=5)
    assert report and report.spooled == 4 and report.delivered == 0 and report.dropped == 0


def test_a_report_whose_timeout_runs_out_is_falsy_and_shows_what_is_pending(
    make_client: Any, collector: Collector
) -> None:
    collector.hang()
    client = make_client()
    _track(client, 3)
    report = client.flush_report(timeout=0.3)
    assert not report and report.pending == 3 and report.delivered == 0
    collector.release()
    later = client.flush_report(timeout=5)
    assert later and later.delivered == 3 and later.queued == 0 and later.pending == 0


def test_the_module_report_covers_the_default_client(facade: Any, collector: Collector) -> None:
    _track(facade, 2)
    report = facade.flush_report(timeout=5)
    assert isinstance(report, analytics.FlushReport)
    assert report and report.delivered == 2 and collector.message_count() == 2
