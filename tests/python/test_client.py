"""Client end to end through Kafka and MongoDB: the C suite's cases from
Python (submit, get, wait, list, cancel, retry, update).

Jobs are submitted before a worker starts, so what a test checks does not
hang on timing (test_worker.py covers submitting to a running worker)."""

import datetime

import pytest

import djob
from _helpers import compute_handler, sha256_hex


def test_submitted_compute_job_completes_with_hashlib_sha256(client, make_worker):
    job_id = client.submit("compute", {"input": "hello"})
    make_worker({"compute": compute_handler})
    assert isinstance(job_id, str) and len(job_id) == 36
    job = client.wait(job_id, timeout=30)
    assert job["_id"] == job_id
    assert job["status"] == "completed"
    assert job["result"] == {"message": "Success", "value": sha256_hex("hello")}
    assert job["attempts"] == 1
    assert len(job["finishedAt"]) == 24 and job["finishedAt"].endswith("Z")


def test_get_returns_the_queued_job_document(client):
    job_id = client.submit("compute", {"input": "queued", "n": [1, 2.5, None, True]},
                           max_attempts=5)
    job = client.get(job_id)
    assert job["_id"] == job_id
    assert job["type"] == "compute"
    assert job["status"] == "queued"
    assert job["payload"] == {"input": "queued", "n": [1, 2.5, None, True]}
    assert job["maxAttempts"] == 5
    assert job["attempts"] == 0


def test_wait_without_a_worker_raises_djob_timeout(client):
    job_id = client.submit("compute", {"input": "nobody runs me"})
    with pytest.raises(djob.DjobTimeout) as e:
        client.wait(job_id, timeout=0.3)
    assert e.value.code == djob.errors.ETIMEOUT
    assert e.value.retriable
    assert isinstance(e.value, TimeoutError)


def test_get_of_an_unknown_id_raises_not_found(client):
    with pytest.raises(djob.NotFoundError) as e:
        client.get("00000000-0000-4000-8000-000000000000")
    assert e.value.code == djob.errors.ENOTFOUND
    assert str(e.value) == "Job not found"


def test_list_filters_by_status_and_type_and_pages_with_the_cursor(client):
    compute = client.submit_many([{"type": "compute", "payload": {"input": f"c{i}"}}
                                  for i in range(5)])
    data = client.submit_many([{"type": "data", "payload": {"values": [i]}}
                               for i in range(2)])
    for job_id in compute[:2]:
        assert client.cancel(job_id)["status"] == "cancelled"

    queued_compute, nxt = client.list(status="queued", type="compute")
    assert sorted(j["_id"] for j in queued_compute) == sorted(compute[2:])
    assert nxt is None
    cancelled, _ = client.list(status="cancelled")
    assert sorted(j["_id"] for j in cancelled) == sorted(compute[:2])
    data_jobs, _ = client.list(type="data")
    assert sorted(j["_id"] for j in data_jobs) == sorted(data)
    assert client.list(status="completed") == ([], None)

    seen, pages, after = [], 0, None
    while True:
        page, after = client.list(limit=2, after=after)
        pages += 1
        assert len(page) <= 2
        seen += [j["_id"] for j in page]
        if after is None:
            break
        assert pages < 10, "the cursor does not advance"
    assert sorted(seen) == sorted(compute + data)
    assert len(seen) == len(set(seen)) == 7
    assert pages == 4
    created = [client.get(i)["createdAt"] for i in seen]
    assert created == sorted(created, reverse=True), "not newest first"


def test_cancel_of_a_queued_job_cancels_and_of_a_completed_one_conflicts(client,
                                                                         make_worker):
    queued = client.submit("compute", {"input": "cancel me"})
    job = client.cancel(queued)
    assert job["status"] == "cancelled"
    assert client.get(queued)["status"] == "cancelled"

    done = client.submit("compute", {"input": "finish me"})
    make_worker({"compute": compute_handler})
    assert client.wait(done, timeout=30)["status"] == "completed"
    with pytest.raises(djob.ConflictError) as e:
        client.cancel(done)
    assert e.value.code == djob.errors.ECONFLICT
    assert client.get(done)["status"] == "completed"


def test_retry_of_a_completed_job_conflicts(client, make_worker):
    job_id = client.submit("compute", {"input": "x"})
    make_worker()
    assert client.wait(job_id, timeout=30)["status"] == "completed"
    with pytest.raises(djob.ConflictError):
        client.retry(job_id)


def test_update_applies_legal_transitions_and_refuses_illegal_ones(client):
    job_id = client.submit("compute", {"input": "patched"})
    job = client.update(job_id, status="processing", worker_id="w1", lease_ms=30000)
    assert job["status"] == "processing"
    assert job["workerId"] == "w1"
    with pytest.raises(djob.ConflictError):
        client.update(job_id, status="completed", worker_id="w2", attempts=1,
                      result={"value": "stale"})
    job = client.update(job_id, status="completed", worker_id="w1", attempts=1,
                        result={"value": "fresh"})
    assert job["status"] == "completed"
    assert job["result"] == {"value": "fresh"}
    with pytest.raises(djob.ConflictError):
        client.update(job_id, status="processing")
    with pytest.raises(djob.InvalidError):
        client.update(job_id, status="bogus")
    with pytest.raises(djob.InvalidError):
        client.update(job_id)


def test_update_cancel_and_retry_answer_with_the_job_as_stored(client):
    """The document a change answers with is the one a later get reads:
    fields set, unset and appended to the history alike."""
    job_id = client.submit("compute", {"input": "answered"})
    answers = [client.update(job_id, status="processing", worker_id="w1", lease_ms=30000)]
    assert answers[-1] == client.get(job_id)
    answers.append(client.update(job_id, status="processing", worker_id="w1", attempts=1,
                                 lease_ms=60000))
    assert answers[-1] == client.get(job_id)
    answers.append(client.update(job_id, status="failed", worker_id="w1", attempts=1,
                                 error="boom"))
    assert answers[-1] == client.get(job_id)
    assert [h["status"] for h in answers[-1]["history"]] == ["failed"]
    answers.append(client.retry(job_id))
    assert answers[-1] == client.get(job_id)
    assert "error" not in answers[-1] and answers[-1]["status"] == "queued"
    # A second attempt appends to the history that is there.
    answers.append(client.update(job_id, status="processing", worker_id="w2", lease_ms=30000))
    answers.append(client.update(job_id, status="failed", worker_id="w2", attempts=1,
                                 error="boom again"))
    assert answers[-1] == client.get(job_id)
    assert [h["workerId"] for h in answers[-1]["history"]] == ["w1", "w2"]
    answers.append(client.retry(job_id))
    answers.append(client.cancel(job_id))
    assert answers[-1] == client.get(job_id)
    assert [a["status"] for a in answers] == ["processing", "processing", "failed", "queued",
                                              "processing", "failed", "queued", "cancelled"]


def test_submit_many_returns_ids_in_order_and_a_bad_batch_stores_nothing(client):
    ids = client.submit_many([{"type": "compute", "payload": {"input": f"b{i}"}}
                              for i in range(3)])
    assert len(ids) == 3 and len(set(ids)) == 3
    assert [client.get(i)["payload"]["input"] for i in ids] == ["b0", "b1", "b2"]

    before, _ = client.list()
    with pytest.raises(djob.InvalidError, match="Unknown job type"):
        client.submit_many([{"type": "compute", "payload": {"input": "ok"}},
                            {"type": "no_such_type", "payload": {}}])
    with pytest.raises(djob.InvalidError):
        client.submit_many([{"type": "compute", "payload": {"input": "ok"}}, "not a dict"])
    with pytest.raises(djob.InvalidError):
        client.submit_many([])
    after, _ = client.list()
    assert len(after) == len(before) == 3


def test_idempotency_key_returns_the_first_job(client):
    first = client.submit("compute", {"input": "once"}, idempotency_key="key-1")
    again = client.submit("compute", {"input": "once"}, idempotency_key="key-1")
    assert first == again
    other = client.submit("compute", {"input": "once"}, idempotency_key="key-2")
    assert other != first


def test_run_at_in_the_future_schedules_the_job(client):
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    job = client.get(client.submit("compute", {"input": "later"}, run_at=later))
    assert job["status"] == "scheduled"
    assert job["runAt"] == later.strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{later.microsecond // 1000:03d}Z"
    job = client.get(client.submit("compute", {"input": "later"},
                                   run_at="2099-01-01T00:00:00.000Z"))
    assert job["status"] == "scheduled"
    assert job["runAt"] == "2099-01-01T00:00:00.000Z"


def test_a_client_can_be_shared_by_threads(client):
    import concurrent.futures
    # No call before: the threads share the client's first use too.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: client.submit("compute", {"input": f"t{i}"}),
                            range(16)))
        docs = list(pool.map(client.get, ids))
    assert len(set(ids)) == 16
    assert sorted(d["payload"]["input"] for d in docs) == sorted(f"t{i}" for i in range(16))
    stats = client.stats()
    assert stats["submissions"] == 16 and stats["submittedJobs"] == 16
    assert 1 <= stats["submitWrites"] <= 16, stats
