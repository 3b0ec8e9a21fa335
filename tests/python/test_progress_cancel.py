"""Progress reported by a running handler and the cancel of a running job
(issue 15 items 5 and 6), against the live dev stack with the store sink."""

import threading
import time

from _helpers import read_until, wait_until


def test_progress_is_visible_in_get_while_running_and_writes_are_coalesced(client, make_worker):
    release = threading.Event()
    calls = []

    def slow(job):
        for i in range(1, 100001):
            job.set_progress(i, f"step {i}")
            calls.append(i)
            if i == 100000:
                break
        while not release.wait(0.05):
            pass
        job.set_progress(100000, "done")
        return {"ok": True}

    job_id = client.submit("compute", {"input": "p"})
    make_worker({"compute": slow})
    running = read_until(lambda: client.get(job_id),
                         lambda j: (j.get("progress") or {}).get("value") == 100000, timeout=30)
    assert running["status"] == "processing", running
    assert running["progress"]["message"] == "step 100000", running
    assert running["progress"]["updatedAt"].endswith("Z"), running
    seq_running = running.get("updatedAt")
    time.sleep(2.5)
    # Nothing changed: no further progress writes while the handler waits.
    again = client.get(job_id)
    assert again["progress"] == running["progress"], (running, again)
    release.set()
    done = client.wait(job_id, timeout=30)
    assert done["status"] == "completed", done
    assert done["progress"]["value"] == 100000 and done["progress"]["message"] == "done", done
    print(f"progress: {len(calls)} set_progress calls, final {done['progress']}, "
          f"updatedAt while running {seq_running}")


def test_cancel_of_a_running_job_stops_the_handler_within_a_second(client, make_worker):
    started = threading.Event()
    seen = {}

    def long(job):
        started.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if job.should_stop():
                seen["stop_at"] = time.monotonic()
                break
            time.sleep(0.01)
        return {"shouldNot": "be written"}

    job_id = client.submit("compute", {"input": "c"})
    make_worker({"compute": long})
    assert started.wait(30)
    assert wait_until(lambda: client.get(job_id)["status"] == "processing", timeout=10)
    time.sleep(1.0)
    cancelled_at = time.monotonic()
    client.cancel(job_id)
    assert wait_until(lambda: "stop_at" in seen, timeout=5), "should_stop never turned true"
    delay = seen["stop_at"] - cancelled_at
    assert delay <= 1.0, f"should_stop turned true {delay:.3f} s after the cancel"
    time.sleep(1.0)  # the handler's outcome has been tried by now
    final = client.get(job_id)
    assert final["status"] == "cancelled", final
    assert "result" not in final, final
    print(f"cancel: should_stop after {delay * 1000:.0f} ms, final status {final['status']}")
