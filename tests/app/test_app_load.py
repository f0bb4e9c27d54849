"""A shorter run of benchmarks/load.py: 20 clients mixing analyze and chat against the
launched app for 15 s, then analyses of different pictures up to 80 in all. No errors,
every result matches its own picture, and the server's resident memory stays within the
bound the README documents for 300 analyses."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load import free_port, launch, resident_mb, run

RSS_BOUND_MB = 1200  # README: resident memory after 300 analyses stays under this

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="resident memory is read from /proc (Linux)")


@pytest.mark.timeout(600)
def test_twenty_clients_get_their_own_results_and_memory_stays_bounded(tmp_path):
    port = free_port()
    server = launch(port, tmp_path / "server.log")
    try:
        outcome = run(f"http://127.0.0.1:{port}/", server.pid, clients=20, seconds=15, analyses=80)
        rss_after = resident_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert outcome["errors"] == [], outcome["errors"][:5]
    assert outcome["mismatches"] == [], outcome["mismatches"][:5]
    assert outcome["by_kind"]["analyze"]["requests"] > 0 and outcome["by_kind"]["chat"]["requests"] > 0
    assert outcome["analyses"] >= 80 and outcome["distinct_images"] == outcome["requests"]  # a picture of its own each
    assert rss_after < RSS_BOUND_MB, outcome
