"""Memory handed over by the library is freed: repeated calls leave the
resident set flat."""

import os

import djob  # noqa: F401  (the library is loaded before the first reading)

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def test_ten_thousand_gets_leave_rss_flat(client):
    job_id = client.submit("compute", {"input": "memory", "pad": "x" * 2000})
    for _ in range(1000):  # warm-up: connection pool, allocator arenas
        client.get(job_id)
    before = rss_bytes()
    for _ in range(10000):
        job = client.get(job_id)
    after = rss_bytes()
    assert job["payload"]["input"] == "memory"
    growth = after - before
    print(f"RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB "
          f"({growth / 1024:+.0f} KiB over 10000 gets)")
    # A leak of the returned document alone would be over 20 MiB.
    assert growth < 2 * 2**20


def test_ten_thousand_failed_calls_leave_rss_flat(client):
    missing = "00000000-0000-4000-8000-000000000000"
    for _ in range(500):
        try:
            client.get(missing)
        except djob.NotFoundError:
            pass
    before = rss_bytes()
    for _ in range(10000):
        try:
            client.get(missing)
        except djob.NotFoundError:
            pass
    growth = rss_bytes() - before
    print(f"RSS growth {growth / 1024:+.0f} KiB over 10000 failed gets")
    assert growth < 2 * 2**20
