#!/usr/bin/env python3
"""Connection floods against djob-api and djob-worker's HTTP port
(tests/e2e/flood_test.py): hundreds of idle connections, and slow-loris
clients trickling their headers or bodies. Other clients must still be
served within a bound that follows from the configuration (http.threads,
http.request.timeout.ms), the slow clients get their 408 or 400, nothing is
stored, and the daemon is alive and exits 0 on SIGTERM afterwards.

usage: flood_test.py <case>

civetweb 1.15 gives each open connection a thread of its own: connections
up to http.threads cost a newcomer nothing; beyond, a newcomer waits in the
backlog until threads free up, each idle connection holding one for at most
http.request.timeout.ms. Uses the helpers of e2e_test.py; standard library
only.
"""
import math
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_test as e2e  # noqa: E402
from e2e_test import Failure, check  # noqa: E402

CASE = sys.argv[1] if len(sys.argv) > 1 else "?"
THREADS = 128          # http.threads (the default)
TIMEOUT_S = 5.0        # http.request.timeout.ms (the default)


def timed_get(port, path="/health"):
    t = time.time()
    r = e2e.request(port, "GET", path)
    return r, time.time() - t


def open_idle(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        socks.append(s)
    return socks


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def idle_flood(port):
    """Idle connections below and above http.threads."""
    few = open_idle(port, THREADS // 2)
    try:
        r, dt = timed_get(port)
        check(r.status == 200, f"/health under {len(few)} idle connections: {r}")
        # Threads are left: no wait at all beyond scheduling.
        check(dt < 2.0, f"/health took {dt:.1f} s beside {len(few)} idle connections")
        print(f"{len(few)} idle connections: /health in {dt * 1000:.0f} ms")
    finally:
        close_all(few)
    n = 400
    many = open_idle(port, n)
    try:
        r, dt = timed_get(port)
        bound = TIMEOUT_S * (math.ceil(n / THREADS) + 1)
        check(r.status == 200, f"/health under {n} idle connections: {r}")
        check(dt < bound, f"/health took {dt:.1f} s beside {n} idle connections (bound "
                          f"{bound:.0f} s)")
        print(f"{n} idle connections: /health in {dt:.1f} s (bound {bound:.0f} s)")
        # The idle ones were closed by the server: a read sees the end.
        closed = 0
        for s in many[:20]:
            s.settimeout(2 * TIMEOUT_S + 5)
            try:
                closed += s.recv(1) == b""
            except OSError:
                closed += 1
        check(closed == 20, f"only {closed} of 20 idle connections were closed by the server")
    finally:
        close_all(many)
    r, dt = timed_get(port)
    check(r.status == 200 and dt < 2.0, f"/health after the flood: {r} in {dt:.1f} s")


def slow_client(port, head, trickle, results, i):
    """Send head, then one byte of trickle a second until the server answers
    or closes; record (seconds, status line)."""
    t = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    status = b""
    try:
        s.sendall(head)
        s.settimeout(1.0)
        while time.time() - t < 60:
            try:
                d = s.recv(4096)
                # The rest of the answer (headers and body are two writes);
                # the server closes after it.
                s.settimeout(5.0)
                while d:
                    try:
                        more = s.recv(4096)
                    except OSError:
                        break
                    if not more:
                        break
                    d += more
                status = d.split(b"\r\n", 1)[0]
                body = d.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in d else b""
                results[i] = (time.time() - t, status, body)
                return
            except socket.timeout:
                pass
            try:
                s.sendall(trickle)
            except OSError:
                pass
    except OSError as e:
        results[i] = (time.time() - t, repr(e).encode(), b"")
        return
    finally:
        s.close()
    results[i] = (time.time() - t, b"no answer", b"")


def loris(port, head, trickle, n, want):
    results = [None] * n
    threads = [threading.Thread(target=slow_client, args=(port, head, trickle, results, i))
               for i in range(n)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    r, dt = timed_get(port)
    check(r.status == 200 and dt < 2.0,
          f"/health beside {n} slow clients: {r} in {dt:.1f} s")
    for t in threads:
        t.join(90)
    check(all(res is not None for res in results), "a slow client never finished")
    slowest = max(res[0] for res in results)
    statuses = {res[1] for res in results}
    check(statuses == {want}, f"slow clients got {statuses}, wanted {want}")
    # The body's limit plus the watcher's period and one mg_read.
    check(slowest < 2 * TIMEOUT_S + 3, f"a slow client held on for {slowest:.1f} s")
    print(f"{n} slow clients: {want.decode()} after at most {slowest:.1f} s; "
          f"/health meanwhile in {dt * 1000:.0f} ms")
    return results


def test_api_survives_idle_connection_flood():
    st = e2e.Stack()
    failed = True
    try:
        api = st.api()
        idle_flood(api)
        jid = e2e.submit(api, {"input": "after the flood"})
        check(e2e.request(api, "GET", f"/jobs/{jid}").status == 200, "job not readable")
        failed = False
    finally:
        st.stop(failed)


def test_api_cuts_off_slow_loris_bodies():
    st = e2e.Stack()
    failed = True
    try:
        api = st.api()
        head = (b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{\"type\":\"compute\",")
        results = loris(api, head, b" ", 100, b"HTTP/1.1 408 Request Time-out")
        check(all(b'"error"' in res[2] for res in results), "a 408 without a JSON error")
        e2e.submit(api, {"input": "after the slow ones"})
        check(st.counts() == (1, 1), f"stored or published: {st.counts()}")
        failed = False
    finally:
        st.stop(failed)


def test_api_cuts_off_slow_loris_headers():
    st = e2e.Stack()
    failed = True
    try:
        api = st.api()
        loris(api, b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X", 100,
              b"HTTP/1.0 400 Bad Request")
        failed = False
    finally:
        st.stop(failed)


def test_worker_survives_idle_connection_flood():
    st = e2e.Stack()
    failed = True
    try:
        api = st.api()
        wport = st.worker(api_port=api)
        idle_flood(wport)
        jid = e2e.submit(api, {"input": "worker after the flood"})
        e2e.wait_status(api, jid, "completed")
        failed = False
    finally:
        st.stop(failed)


def test_worker_cuts_off_slow_loris_headers():
    st = e2e.Stack()
    failed = True
    try:
        api = st.api()
        wport = st.worker(api_port=api)
        loris(wport, b"POST /stop HTTP/1.1\r\nHost: x\r\n", b"X", 100,
              b"HTTP/1.0 400 Bad Request")
        h = e2e.request(wport, "GET", "/health").json()
        check(h["consumer"] == "running", f"a slow client stopped the worker: {h}")
        failed = False
    finally:
        st.stop(failed)


if __name__ == "__main__":
    sys.exit(e2e.main(globals().get("test_" + CASE)))
