"""Python handlers in a djob.Worker: results, failures, retries, stopping,
and a Python worker sharing a consumer group with a C worker.

Most tests submit before the worker starts, so what they check does not hang
on timing; test_jobs_submitted_while_a_worker_runs_complete_once covers the
other order (FerretDB 1.24 runs a conditional update as a read then a write,
which the store guards against: README, "How a job is kept exactly once")."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import djob
from _helpers import Counter, compute_handler, sha256_hex, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_python_compute_handler_results_match_hashlib(client, make_worker):
    inputs = ["", "hello", "héllo wörld ✓", "x" * 10000] + [f"job-{i}" for i in range(16)]
    ids = client.submit_many([{"type": "compute", "payload": {"input": s}} for s in inputs])
    make_worker({"compute": compute_handler}, extra={"concurrency": "3"})
    for job_id, text in zip(ids, inputs):
        job = client.wait(job_id, timeout=60)
        assert job["status"] == "completed", job
        assert job["result"]["value"] == sha256_hex(text)
        assert job["result"]["message"] == "Success"


def test_jobs_submitted_while_a_worker_runs_complete_once(client, make_worker):
    calls = Counter()

    def counting(job):
        calls.incr()
        return compute_handler(job)

    make_worker({"compute": counting}, extra={"concurrency": "3"})
    time.sleep(1)  # in the group
    inputs = [f"live-{i}" for i in range(20)]
    ids = client.submit_many([{"type": "compute", "payload": {"input": s}} for s in inputs])
    ids.append(client.submit("compute", {"input": "single"}))
    inputs.append("single")
    for job_id, text in zip(ids, inputs):
        job = client.wait(job_id, timeout=60)
        assert job["status"] == "completed", job
        assert job["result"]["value"] == sha256_hex(text)
        assert job["attempts"] == 1
    assert calls.value == len(ids)


def test_handler_sees_the_job(client, make_worker):
    seen = {}
    kept = []

    def handler(job):
        kept.append(job)
        seen.update(id=job.id, type=job.type, payload=job.payload, attempts=job.attempts,
                    max_attempts=job.max_attempts, worker_id=job.worker_id,
                    should_stop=job.should_stop())
        return {"ok": True}

    job_id = client.submit("data", {"values": [1, 2, 3], "nested": {"a": None}},
                           max_attempts=4)
    worker = make_worker({"data": handler})
    job = client.wait(job_id, timeout=30)
    assert job["status"] == "completed" and job["result"] == {"ok": True}
    assert seen == {"id": job_id, "type": "data",
                    "payload": {"values": [1, 2, 3], "nested": {"a": None}},
                    "attempts": 1, "max_attempts": 4, "worker_id": worker.id,
                    "should_stop": False}
    assert job["workerId"] == worker.id
    # A job kept past its handler call is inert, not a dangling pointer.
    assert kept[0].should_stop() is True


def test_failed_job_keeps_the_exception_text_and_retry_completes_it(client, make_worker):
    def failing(job):
        raise ValueError(f"boom on {job.payload['input']}")

    job_id = client.submit("compute", {"input": "retry me"})
    first = make_worker({"compute": failing})
    job = client.wait(job_id, timeout=30)
    first.close()
    assert job["status"] == "failed"
    assert job["error"].startswith("ValueError: boom on retry me\n")
    assert "Traceback (most recent call last)" in job["error"]
    assert "in failing" in job["error"]
    assert "result" not in job

    requeued = client.retry(job_id)
    assert requeued["status"] == "queued"
    make_worker({"compute": compute_handler})
    job = client.wait(job_id, timeout=30)
    assert job["status"] == "completed", job
    assert job["result"]["value"] == sha256_hex("retry me")
    assert "error" not in job
    # A retry starts the attempts again; the history keeps both outcomes.
    assert job["attempts"] == 1
    assert [h["status"] for h in job["history"]] == ["failed", "completed"]
    assert job["history"][0]["error"].startswith("ValueError: boom on retry me")


def test_handler_returning_a_non_dict_fails_the_job(client, make_worker):
    listed = client.submit("compute", {"input": "x"})
    nan = client.submit("data", {"values": []})
    make_worker({"compute": lambda job: ["not", "a", "dict"],
                 "data": lambda job: {"value": float("nan")}})
    job = client.wait(listed, timeout=30)
    assert job["status"] == "failed"
    assert job["error"] == "Handler for compute returned list, not a dict"
    job = client.wait(nan, timeout=30)
    assert job["status"] == "failed"
    assert "cannot be sent as JSON" in job["error"]


def test_handler_returning_none_completes_without_a_result(client, make_worker):
    job_id = client.submit("compute", {"input": "x"})
    make_worker({"compute": lambda job: None})
    job = client.wait(job_id, timeout=30)
    assert job["status"] == "completed"
    assert not job.get("result")


def test_retry_exception_schedules_another_attempt_or_fails_on_the_last(client, make_worker):
    def handler(job):
        raise djob.Retry(f"not yet (attempt {job.attempts})")

    job_id = client.submit("compute", {"input": "x"}, max_attempts=1)
    again = client.submit("compute", {"input": "y"}, max_attempts=3)
    make_worker({"compute": handler})
    job = client.wait(job_id, timeout=30)
    assert job["status"] == "failed"
    assert job["error"] == "not yet (attempt 1)"
    assert job["attempts"] == 1
    # With attempts left, the job is scheduled for later (the scheduler
    # requeues it when runAt comes).
    assert wait_until(lambda: client.get(again)["status"] == "scheduled", 30)
    job = client.get(again)
    assert job["error"] == "not yet (attempt 1)"
    assert job["runAt"] > job["updatedAt"]


def test_stop_from_another_thread_ends_a_blocking_run(config, client):
    worker = djob.Worker(config)
    worker.register("compute", compute_handler)
    done = threading.Event()
    errors = []

    def run():
        try:
            worker.run()
        except BaseException as e:  # reported below
            errors.append(e)
        done.set()

    job_id = client.submit("compute", {"input": "before stop"})
    t = threading.Thread(target=run)
    t.start()
    try:
        job = client.wait(job_id, timeout=30)
        assert job["status"] == "completed"
        assert worker.running
    finally:
        worker.stop()
    assert done.wait(30), "run() did not return after stop()"
    t.join()
    assert errors == []
    assert not worker.running
    # It can run again, and a stop that finds it stopped changes nothing.
    worker.stop()
    job_id = client.submit("compute", {"input": "after restart"})
    worker.start()
    job = client.wait(job_id, timeout=30)
    assert job["status"] == "completed"
    worker.close()
    assert worker.closed


def test_stop_from_a_handler_stops_the_worker_without_deadlock(config, client):
    worker = djob.Worker(config)

    @worker.handler("compute")
    def handler(job):
        worker.stop()
        return compute_handler(job)

    job_id = client.submit("compute", {"input": "stop"})
    t0 = time.monotonic()
    worker.run()  # returns because the handler asked for the stop
    assert time.monotonic() - t0 < 60
    assert client.wait(job_id, timeout=10)["status"] == "completed"
    worker.close()


def test_ctrl_c_stops_a_blocking_run_and_raises_keyboard_interrupt(config):
    code = (
        "import djob, sys\n"
        f"w = djob.Worker({config!r})\n"
        "w.register('compute', lambda job: {})\n"
        "print('running', flush=True)\n"
        "try:\n"
        "    w.run()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', w.running, flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.path.join(
                                ROOT, "bindings", "python")))
    try:
        assert proc.stdout.readline() == "running\n"
        time.sleep(2)  # inside run()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert out == "interrupted False\n"
    assert proc.returncode == 0


def test_run_without_handlers_raises_state_error(config):
    with djob.Worker(config) as worker:
        with pytest.raises(djob.StateError, match="No handler"):
            worker.run()


def test_slow_handler_is_drained_before_stop_returns(client, make_worker):
    started = threading.Event()

    def slow(job):
        started.set()
        time.sleep(1.5)
        return compute_handler(job)

    job_id = client.submit("compute", {"input": "slow"})
    worker = make_worker({"compute": slow})
    assert started.wait(30)
    worker.stop()
    assert client.get(job_id)["status"] == "completed"


# ---- a Python worker and a C worker in one consumer group ----

def _core_worker():
    path = os.environ.get("DJOB_CORE_WORKER") or os.path.join(
        ROOT, "build", "tests", "integration", "core_worker")
    assert os.access(path, os.X_OK), f"{path} is not built (ninja -C build)"
    return path


def _assigned(log_path):
    try:
        with open(log_path) as f:
            return [line for line in f if "Assigned" in line]
    except FileNotFoundError:
        return []


def test_python_and_c_workers_share_a_group_and_no_job_completes_twice(config, client,
                                                                       tmp_path):
    runlog = tmp_path / "runs.log"
    stderr_path = tmp_path / "core_worker.stderr"
    fd = os.open(runlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.getpid()

    def recording_compute(job):
        # The C worker's record format: "<S|E> <job id> <pid> <attempt>".
        os.write(fd, f"S {job.id} {pid} {job.attempts}\n".encode())
        result = compute_handler(job)
        os.write(fd, f"E {job.id} {pid} {job.attempts}\n".encode())
        return result

    py_worker = djob.Worker({**config, "log.level": "info"})
    py_worker.register("compute", recording_compute)
    c_worker = None
    try:
        # The C worker holds every partition first; the Python worker's join
        # makes the group rebalance, after which the C worker is assigned
        # again, and both hold partitions before any job is submitted.
        env = dict(os.environ, DJOB_LOG_LEVEL="info")
        with open(stderr_path, "w") as err:
            c_worker = subprocess.Popen(
                [_core_worker(), config["topic.prefix"], config["group.id"],
                 config["mongo.collection"], str(runlog)], env=env, stderr=err)
        assert wait_until(lambda: len(_assigned(stderr_path)) >= 1, 60), \
            "the C worker was never assigned partitions"
        py_worker.start()
        assert wait_until(lambda: len(_assigned(stderr_path)) >= 2, 60), \
            "the group did not rebalance when the Python worker joined"

        inputs = [f"shared-{i}" for i in range(40)]
        ids = client.submit_many([{"type": "compute", "payload": {"input": s}}
                                  for s in inputs])
        for job_id, text in zip(ids, inputs):
            try:
                job = client.wait(job_id, timeout=60)
            except djob.DjobTimeout:
                runs = [r for r in runlog.read_text().splitlines() if job_id in r]
                pytest.fail(f"job {job_id} did not finish: {client.get(job_id)}; runs {runs}; "
                            f"python worker {py_worker.stats()}; C worker log "
                            f"{stderr_path.read_text()[-3000:]}")
            assert job["status"] == "completed", job
            assert job["result"] == {"message": "Success", "value": sha256_hex(text)}
            assert job["attempts"] == 1
    finally:
        py_worker.close()
        if c_worker is not None:
            c_worker.terminate()
            assert c_worker.wait(30) == 0, "the C worker did not stop cleanly"
        os.close(fd)

    ends = [line.split() for line in runlog.read_text().splitlines() if line.startswith("E ")]
    by_job = {}
    for _, job_id, run_pid, _ in ends:
        by_job.setdefault(job_id, []).append(int(run_pid))
    twice = {j: p for j, p in by_job.items() if len(p) > 1}
    assert not twice, f"jobs completed more than once: {twice}"
    assert sorted(by_job) == sorted(ids)
    by_python = sum(1 for pids in by_job.values() if pids == [pid])
    by_c = sum(1 for pids in by_job.values() if pids == [c_worker.pid])
    print(f"{len(ids)} jobs: {by_python} by the Python worker, {by_c} by the C worker")
    assert by_python > 0 and by_c > 0 and by_python + by_c == len(ids)
