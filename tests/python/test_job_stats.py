"""Client.job_stats(): the collection's jobs by status and type, as
GET /stats answers them, exact once the jobs are settled."""


from _helpers import compute_handler, read_until


def settled(client, want, timeout=30):
    """job_stats() until want(stats) holds (it is read at most once a second)."""
    return read_until(client.job_stats, want, timeout)


def test_job_stats_count_submitted_and_completed_jobs_by_status_and_type(client, make_worker):
    ids = [client.submit("compute", {"input": f"s{i}"}) for i in range(3)]
    client.submit("data", {"rows": []})
    stats = settled(client, lambda s: s["total"] == 4)
    assert stats["total"] == 4
    assert stats["byStatus"]["queued"] == 4
    assert stats["byType"]["compute"]["total"] == 3
    assert stats["byType"]["data"] == {"total": 1, "queued": 1, "scheduled": 0, "processing": 0,
                                       "completed": 0, "failed": 0, "cancelled": 0}
    make_worker({"compute": compute_handler})
    for job_id in ids:
        assert client.wait(job_id, timeout=60)["status"] == "completed"
    stats = settled(client, lambda s: s["byStatus"]["completed"] == 3)
    assert stats["byStatus"]["completed"] == 3 and stats["byStatus"]["queued"] == 1
    assert sum(stats["throughput"]["perMinute"]["completed"]) == 3
    assert stats["throughput"]["perSecond"]["intervalSeconds"] == 1
    assert len(stats["throughput"]["perSecond"]["completed"]) == 60
