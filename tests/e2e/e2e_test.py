#!/usr/bin/env python3
"""End-to-end tests: djob-api and djob-worker processes, started here,
against the live dev stack (scripts/devstack up), over HTTP.

usage: e2e_test.py <case>

Every case has its own topic prefix, consumer group and collection, so runs
never see each other's data. The daemons' paths come from DJOB_E2E_API,
DJOB_E2E_WORKER, DJOB_E2E_COUNT and DJOB_E2E_PLUGIN (set by meson). A case
fails, never skips, when the stack or a daemon is missing. Standard library
only.
"""
import hashlib
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

CASE = sys.argv[1] if len(sys.argv) > 1 else "?"
TOKENS = "sub-tok-1:submit,wrk-tok-2:worker,adm-tok-3:admin"
SUBMIT, WORKER, ADMIN = "sub-tok-1", "wrk-tok-2", "adm-tok-3"
TYPES = ["compute", "file", "blockchain", "data"]


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(var):
    path = os.environ.get(var, "")
    check(path and os.access(path, os.X_OK), f"{var} does not name an executable: {path!r}")
    return path


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise Failure(f"reply {self.status} is not JSON: {self.body[:200]!r}")

    def __repr__(self):
        return f"{self.status} {self.body[:300]!r}"


def request(port, method, path, body=None, token=None, headers=None, raw=None, conn=None):
    """One HTTP/1.1 request. body: JSON-encoded; raw: bytes or an iterable
    (sent chunked)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}  # None: header not sent
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    chunked = data is not None and not isinstance(data, (bytes, str))
    try:
        conn.request(method, path, body=data, headers=h, encode_chunked=chunked)
        r = conn.getresponse()
        out = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        if own:
            conn.close()
    return out


def expect_error(r, status, what):
    """A refused request: the exact code and a JSON {"error": "..."}."""
    check(r.status == status, f"{what}: expected {status}, got {r}")
    check(r.headers.get("content-type", "").startswith("application/json"),
          f"{what}: content type {r.headers.get('content-type')}")
    j = r.json()
    check(isinstance(j, dict) and isinstance(j.get("error"), str) and j["error"],
          f"{what}: no error text in {r}")
    return j


class Stack:
    """The daemons of one case, on free ports, with this case's names."""

    def __init__(self):
        tag = "e2e%d%d" % (os.getpid(), int(time.time() * 1000) % 10**9)
        self.prefix = tag + "."
        self.group = tag
        self.coll = tag
        self.dir = tempfile.mkdtemp(prefix="djob-e2e-")
        self.procs = []  # (name, Popen, log path)

    def env(self, extra):
        e = dict(os.environ)
        e.update({
            "DJOB_TOPIC_PREFIX": self.prefix,
            "DJOB_GROUP_ID": self.group,
            "DJOB_MONGO_COLLECTION": self.coll,
            "DJOB_LOG_LEVEL": "info",
            "DJOB_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "DJOB_TOPIC_PARTITIONS": "3",
        })
        for k in ("DJOB_API_TOKENS", "DJOB_TOKEN", "DJOB_API_LISTEN", "DJOB_SINK", "DJOB_PLUGINS"):
            e.pop(k, None)
        e.update(extra)
        return e

    def spawn(self, name, argv, extra_env):
        log = os.path.join(self.dir, f"{name}-{len(self.procs)}.log")
        wrap = os.environ.get("DJOB_TEST_WORKER_WRAPPER", "").split()
        p = subprocess.Popen(wrap + argv, env=self.env(extra_env), stdout=open(log, "w"),
                             stderr=subprocess.STDOUT, preexec_fn=self.preexec)
        self.procs.append((name, p, log))
        return p

    def wait_ready(self, p, port, name, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                raise Failure(f"{name} exited with {p.returncode} at start")
            try:
                if request(port, "GET", "/health").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failure(f"{name} did not answer /health within {timeout} s")

    preexec = None  # run in the child before exec (same PID as the daemon)

    def api(self, tokens=None, extra=None):
        port = free_port()
        env = {"DJOB_API_LISTEN": "127.0.0.1"} if tokens else {}
        if tokens:
            env["DJOB_API_TOKENS"] = tokens
        env.update(extra or {})
        p = self.spawn("djob-api", [binary("DJOB_E2E_API"), "--port", str(port)], env)
        self.wait_ready(p, port, "djob-api")
        return port

    def worker(self, sink="store", api_port=None, token=None, tokens=None, stopped=False,
               concurrency=4, worker_id=None):
        port = free_port()
        argv = [binary("DJOB_E2E_WORKER"), "--port", str(port), "--sink", sink,
                "--plugin", binary("DJOB_E2E_PLUGIN"), "--set", f"concurrency={concurrency}"]
        if worker_id:
            argv += ["--set", f"worker.id={worker_id}"]
        if stopped:
            argv.append("--stopped")
        env = {}
        if api_port:
            env["DJOB_API_URL"] = f"http://127.0.0.1:{api_port}"
        if token:
            env["DJOB_TOKEN"] = token
        if tokens:
            env["DJOB_API_TOKENS"] = tokens
            env["DJOB_API_LISTEN"] = "127.0.0.1"
        p = self.spawn("djob-worker", argv, env)
        self.wait_ready(p, port, "djob-worker")
        return port

    def counts(self):
        """(documents in the collection, messages in the topics)."""
        out = subprocess.run([binary("DJOB_E2E_COUNT"), self.coll] +
                             [self.prefix + t for t in TYPES],
                             capture_output=True, text=True, timeout=60)
        check(out.returncode == 0, f"e2e_count failed: {out.stderr.strip()}")
        docs, msgs = out.stdout.split()
        return int(docs), int(msgs)

    def stop(self, failed):
        """SIGTERM every daemon; each must exit 0 (drained, committed)."""
        errors = []
        for name, p, log in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    # Where it hangs, when gdb is there to say.
                    try:
                        bt = subprocess.run(["gdb", "-p", str(p.pid), "-batch", "-ex",
                                             "thread apply all bt 15"], capture_output=True,
                                            text=True, timeout=60).stdout
                        sys.stderr.write(f"---- {name} threads ----\n{bt}\n")
                    except (OSError, subprocess.TimeoutExpired):
                        pass
                    p.kill()
                    p.wait()
                    errors.append(f"{name} did not stop within 90 s of SIGTERM")
                    continue
            if p.returncode != 0:
                errors.append(f"{name} exited with {p.returncode}")
        if failed or errors:
            for name, p, log in self.procs:
                with open(log, errors="replace") as f:
                    lines = f.readlines()
                sys.stderr.write(f"---- {name} ({log}), last lines ----\n")
                sys.stderr.writelines(lines[-40:])
        for name, p, log in self.procs:
            with open(log, errors="replace") as f:
                for n, line in enumerate(f, 1):
                    try:
                        json.loads(line)
                    except ValueError:
                        # ASan reports are not ours to format.
                        if ("Sanitizer" not in line and not line.startswith(("=", " ", "#"))
                                and not libmongoc_load_line(line)):
                            errors.append(f"{name} log line {n} is not JSON: {line[:120]!r}")
                            break
        if errors:
            raise Failure("; ".join(errors))
        if not failed:
            drop(binary("DJOB_E2E_COUNT"), self.coll, self.prefix, self.group)


def libmongoc_load_line(line):
    """libmongoc initializes itself in a constructor when its library is
    loaded, before djob's code runs or can set a log handler; the one thing
    it says there is that /dev/shm/mongoc-PID is taken (left behind by a
    killed process with the same PID). That line alone is not djob's."""
    return line.rstrip("\n").endswith("mongoc: Falling back to malloc for counters.")


def drop(tool, coll, prefix, group):
    """Remove a passed case's collection, topics and consumer group from the
    servers (a failed one keeps them to look at); a failure to is said, not
    fatal: the case's own checks have passed."""
    try:
        out = subprocess.run([tool, "--drop", coll, prefix, group], capture_output=True,
                             text=True, timeout=60)
        if out.returncode != 0:
            sys.stderr.write(f"warning: could not remove {coll}, {prefix}*, {group}: "
                             f"{out.stderr.strip()}\n")
    except (OSError, subprocess.TimeoutExpired) as e:
        sys.stderr.write(f"warning: could not remove {coll}, {prefix}*, {group}: {e}\n")


def wait_status(port, job_id, wanted, token=None, timeout=60, seen=None):
    deadline = time.time() + timeout
    doc = None
    while time.time() < deadline:
        r = request(port, "GET", f"/jobs/{job_id}", token=token)
        check(r.status == 200, f"GET /jobs/{job_id}: {r}")
        doc = r.json()
        if seen is not None and (not seen or seen[-1] != doc["status"]):
            seen.append(doc["status"])
        if doc["status"] == wanted:
            return doc
        check(doc["status"] not in ("completed", "failed", "cancelled") or doc["status"] == wanted,
              f"job {job_id} ended {doc['status']}, wanted {wanted}: {doc}")
        time.sleep(0.05)
    raise Failure(f"job {job_id} not {wanted} within {timeout} s (seen {seen}): {doc}")


def submit(port, payload, token=None, type_="compute"):
    r = request(port, "POST", "/jobs", {"type": type_, "payload": payload}, token=token)
    check(r.status == 201, f"POST /jobs: expected 201, got {r}")
    j = r.json()
    check(set(j) == {"jobId"} and re.fullmatch(r"[0-9a-f-]{36}", j["jobId"]), f"reply {j}")
    return j["jobId"]


def metric(text, name, **labels):
    """Value of one series in a Prometheus text exposition, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


# ---- cases ----

def prototype_flow(sink):
    """The prototype's client flow, with a worker recording status through
    `sink`. With the api sink the API takes tokens, as a decentralized
    deployment would; with the store sink nobody sends a token, as the
    prototype's clients do not."""
    st = Stack()
    failed = True
    try:
        tokens = TOKENS if sink == "api" else None
        sub = SUBMIT if tokens else None
        adm = ADMIN if tokens else None
        api = st.api(tokens=tokens)
        wport = st.worker(sink=sink, api_port=api, token=WORKER if tokens else None,
                          tokens=tokens)

        # POST -> 201 {"jobId"}; GET until completed with the sha256.
        jid = submit(api, {"input": "hello"}, token=sub)
        doc = wait_status(api, jid, "completed", token=sub)
        check(doc["result"] == {"message": "Success", "value": sha256("hello")}, f"result {doc}")
        check(doc["attempts"] == 1 and doc["workerId"], f"attempts/workerId {doc}")
        check([h["status"] for h in doc.get("history", [])] == ["completed"], f"history {doc}")

        # Worker stopped: a job stays queued. Started: processing, completed.
        r = request(wport, "POST", "/stop", token=adm)
        check(r.status == 200 and r.json() == {"status": "consumer stopped"}, f"/stop: {r}")
        h = request(wport, "GET", "/health").json()
        check(h["status"] == "ok" and h["consumer"] == "stopped", f"/health {h}")
        jid2 = submit(api, {"input": "slow", "sleepMs": 2500}, token=sub)
        for _ in range(4):
            doc = request(api, "GET", f"/jobs/{jid2}", token=sub).json()
            check(doc["status"] == "queued", f"job ran while the worker was stopped: {doc}")
            time.sleep(1)
        r = request(wport, "POST", "/start", token=adm)
        check(r.status == 200 and r.json() == {"status": "consumer started"}, f"/start: {r}")
        check(request(wport, "GET", "/health").json()["consumer"] == "running", "not running")
        seen = ["queued"]
        doc = wait_status(api, jid2, "completed", token=sub, timeout=90, seen=seen)
        check(seen == ["queued", "processing", "completed"], f"statuses seen {seen}")
        check(doc["result"]["value"] == sha256("slow"), f"result {doc}")

        # A handler asking for a retry: scheduled, then run again.
        jid3 = submit(api, {"input": "again", "failFirst": 1}, token=sub)
        doc = wait_status(api, jid3, "completed", token=sub, timeout=90)
        check(doc["attempts"] == 2, f"attempts {doc}")
        check([h["status"] for h in doc["history"]] == ["failed", "completed"],
              f"history {doc['history']}")
        check(doc["history"][0]["error"] == "Failing on purpose", f"history {doc['history']}")

        # The prototype's worker over PATCH (a type no worker here runs).
        jid4 = submit(api, {"rows": [1, 2]}, token=sub, type_="data")
        wtok = WORKER if tokens else None
        r = request(api, "PATCH", f"/jobs/{jid4}", {"status": "processing"}, token=wtok)
        check(r.status == 200 and r.json()["status"] == "processing", f"PATCH processing: {r}")
        r = request(api, "PATCH", f"/jobs/{jid4}", {"status": "completed", "result": {"n": 2}},
                    token=wtok)
        check(r.status == 200 and r.json()["status"] == "completed"
              and r.json()["result"] == {"n": 2}, f"PATCH completed: {r}")
        r = request(api, "PATCH", f"/jobs/{jid4}", {"status": "processing"}, token=wtok)
        expect_error(r, 409, "PATCH of a completed job")

        # Unknown id.
        r = request(api, "GET", f"/jobs/{uuid.uuid4()}", token=sub)
        check(expect_error(r, 404, "unknown id") == {"error": "Job not found"}, f"404 body {r}")

        # Metrics on both sides.
        m = request(wport, "GET", "/metrics")
        check(m.status == 200 and m.headers["content-type"].startswith("text/plain"), f"{m}")
        text = m.body.decode()
        check((metric(text, "djob_jobs_total", type="compute", status="completed") or 0) >= 3,
              "worker djob_jobs_total completed")
        check((metric(text, "djob_jobs_total", type="compute", status="retried") or 0) >= 1,
              "worker djob_jobs_total retried")
        check((metric(text, "djob_handler_duration_seconds_count", type="compute") or 0) >= 4,
              "worker handler histogram")
        check(metric(text, "djob_consumer_lag") is not None, "worker consumer lag")
        text = request(api, "GET", "/metrics").body.decode()
        check(metric(text, "djob_jobs_total", type="compute", status="submitted") == 3,
              "api djob_jobs_total submitted")
        check(metric(text, "djob_http_requests_total", route="/jobs", method="POST",
                     code="201") == 4, "api djob_http_requests_total")
        failed = False
    finally:
        st.stop(failed)


def test_prototype_flow_with_store_sink():
    prototype_flow("store")


def test_prototype_flow_with_api_sink():
    prototype_flow("api")


def test_bad_input_is_refused_with_json_4xx_and_changes_nothing():
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS, extra={"DJOB_BODY_MAX_BYTES": "4096"})
        # One job to aim updates at (no worker runs in this case).
        jid = submit(api, {"input": "x"}, token=ADMIN)
        before_doc = request(api, "GET", f"/jobs/{jid}", token=ADMIN).json()
        before = st.counts()
        check(before == (1, 1), f"one job and one message expected, counted {before}")

        def post(raw=None, body=None, headers=None, what=""):
            return request(api, "POST", "/jobs", body=body, raw=raw, token=ADMIN,
                           headers=headers)

        cases = [
            ("malformed JSON", post(raw=b'{"type":"compute",'), 400),
            ("empty body", post(raw=b""), 400),
            ("payload is a string", post(body={"type": "compute", "payload": "text"}), 400),
            ("payload is an array", post(body={"type": "compute", "payload": [1]}), 400),
            ("payload missing", post(body={"type": "compute"}), 400),
            ("body is a number", post(raw=b"42"), 400),
            ("unknown type", post(body={"type": "nope", "payload": {}}), 400),
            ("malformed type", post(body={"type": "a b", "payload": {}}), 400),
            ("$-prefixed key", post(body={"type": "compute", "payload": {"$where": "1"}}), 400),
            ("dotted key", post(body={"type": "compute", "payload": {"a.b": 1}}), 400),
            ("nested $ key", post(body={"type": "compute", "payload": {"x": [{"$set": 1}]}}), 400),
            ("batch with one bad job", post(body=[{"type": "compute", "payload": {}},
                                                  {"type": "compute", "payload": 1}]), 400),
            ("empty batch", post(body=[]), 400),
            ("Idempotency-Key on a batch", post(body=[{"type": "compute", "payload": {}}],
                                                headers={"Idempotency-Key": "k1"}), 400),
            ("bad maxAttempts", post(body={"type": "compute", "payload": {},
                                           "maxAttempts": 0}), 400),
            ("bad runAt", post(body={"type": "compute", "payload": {}, "runAt": "soon"}), 400),
            ("body over the limit", post(raw=b'{"type":"compute","payload":{"s":"'
                                         + b"x" * 5000 + b'"}}'), 413),
            ("chunked body over the limit", post(raw=iter([b"[" + b" " * 3000] * 3)), 413),
            ("malformed id (GET)", request(api, "GET", "/jobs/not-a-uuid", token=ADMIN), 400),
            ("malformed id (PATCH)", request(api, "PATCH", "/jobs/12345",
                                             {"status": "completed"}, token=ADMIN), 400),
            ("malformed id (DELETE)", request(api, "DELETE", "/jobs/x'y", token=ADMIN), 400),
            ("malformed id (retry)", request(api, "POST", "/jobs/%24where/retry",
                                             token=ADMIN), 400),
            ("bad status", request(api, "PATCH", f"/jobs/{jid}", {"status": "done"},
                                   token=ADMIN), 400),
            ("PATCH body not an object", request(api, "PATCH", f"/jobs/{jid}", [1],
                                                 token=ADMIN), 400),
            ("PATCH empty body", request(api, "PATCH", f"/jobs/{jid}", raw=b"", token=ADMIN), 400),
            ("PATCH malformed JSON", request(api, "PATCH", f"/jobs/{jid}", raw=b"{",
                                             token=ADMIN), 400),
            ("PATCH result with $ key", request(api, "PATCH", f"/jobs/{jid}",
                                                {"status": "processing", "result": {"$x": 1}},
                                                token=ADMIN), 400),
            ("PATCH over the limit", request(api, "PATCH", f"/jobs/{jid}",
                                             raw=b" " * 5000, token=ADMIN), 413),
            ("queued -> completed", request(api, "PATCH", f"/jobs/{jid}",
                                            {"status": "completed", "result": {}},
                                            token=ADMIN), 409),
            ("queued -> failed", request(api, "PATCH", f"/jobs/{jid}", {"status": "failed"},
                                         token=ADMIN), 409),
            ("stale lease extend", request(api, "PATCH", f"/jobs/{jid}",
                                           {"status": "processing", "workerId": "w-old",
                                            "attempts": 3}, token=ADMIN), 409),
            ("stale fenced completion", request(api, "PATCH", f"/jobs/{jid}",
                                                {"status": "completed", "workerId": "w-old",
                                                 "attempts": 1, "result": {}},
                                                token=ADMIN), 409),
            ("retry of a queued job", request(api, "POST", f"/jobs/{jid}/retry",
                                              token=ADMIN), 409),
            ("bad list limit", request(api, "GET", "/jobs?limit=abc", token=ADMIN), 400),
            ("bad list status", request(api, "GET", "/jobs?status=nope", token=ADMIN), 400),
            ("bad list cursor", request(api, "GET", "/jobs?after=zzz", token=ADMIN), 400),
        ]
        for what, r, status in cases:
            expect_error(r, status, what)
        # A huge Content-Length is refused on the header alone: the reply
        # comes while the body has not been sent.
        with socket.create_connection(("127.0.0.1", api), timeout=10) as sock:
            sock.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                         + ADMIN.encode() + b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000000\r\n\r\n{")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 413"), f"huge Content-Length: {reply[:200]!r}")
        check("error" in json.loads(body), f"huge Content-Length body {body!r}")
        after_doc = request(api, "GET", f"/jobs/{jid}", token=ADMIN).json()
        check(after_doc == before_doc, f"job changed: {before_doc} -> {after_doc}")
        after = st.counts()
        check(after == before, f"documents/messages changed: {before} -> {after}")
        # The API still works after all that.
        submit(api, {"input": "fine"}, token=SUBMIT)
        check(st.counts() == (2, 2), "a good submit after the bad ones")
        failed = False
    finally:
        st.stop(failed)


def deep(opener, closer, depth, prefix=b'{"type":"compute","payload":', close=True):
    """A POST body whose payload nests `depth` levels of opener."""
    body = prefix + opener * depth
    if close:
        body += closer * depth + b"}"
    return body


def test_bad_input_matrix_answers_4xx_json_and_changes_nothing():
    """Every kind of bad body, at every depth and size up to the body limit:
    the right 4xx with a JSON error, nothing stored or published, the job
    untouched and the daemon serving afterwards."""
    st = Stack()
    failed = True
    try:
        limit = 1048576  # the default api.body.max.bytes
        api = st.api(tokens=TOKENS)
        jid = submit(api, {"input": "x"}, token=ADMIN)
        before_doc = request(api, "GET", f"/jobs/{jid}", token=ADMIN).json()
        before = st.counts()
        check(before == (1, 1), f"one job and one message expected, counted {before}")

        def post(raw, headers=None):
            return lambda: request(api, "POST", "/jobs", raw=raw, token=ADMIN, headers=headers)

        def patch(raw, headers=None):
            return lambda: request(api, "PATCH", f"/jobs/{jid}", raw=raw, token=ADMIN,
                                   headers=headers)

        def job(payload_text, extra=b""):
            return b'{"type":"compute","payload":' + payload_text + extra + b"}"

        big_digits = b"1" + b"0" * 5000
        cases = [
            # Nesting: the crash of issue 13, at several depths and sizes.
            ("payload nested 33 deep", post(deep(b"[", b"]", 32)), 400),
            ("payload nested 100 deep", post(deep(b"[", b"]", 100)), 400),
            ("payload nested 900 deep, unclosed", post(deep(b"[", b"]", 900, close=False)), 400),
            ("payload nested 900 deep, closed", post(deep(b"[", b"]", 900)), 400),
            ("objects nested 900 deep", post(deep(b'{"a":', b"}", 900)), 400),
            ("payload nested 5000 deep", post(deep(b"[", b"]", 5000)), 400),
            ("payload nested 100000 deep", post(deep(b"[", b"]", 100000, close=False)), 400),
            ("body of [ up to the limit", post(b"[" * (limit - 1)), 400),
            ("body of { up to the limit", post(b'{"a":' * (limit // 5 - 1)), 400),
            ("objects and arrays up to the limit",
             post(deep(b'[{"a":', b"}]", (limit - 64) // 6, close=False)), 400),
            ("batch of deep payloads", post(b"[" + b",".join([deep(b"[", b"]", 200)] * 3)
                                            + b"]"), 400),
            ("deep in the last job of a batch",
             post(b'[{"type":"compute","payload":{}},' + deep(b"[", b"]", 40) + b"]"), 400),
            ("deep top level", post(b"[" * 40 + b"]" * 40), 400),
            # Numbers.
            ("integer over int64", post(job(b'{"n":9223372036854775808}')), 400),
            ("integer under int64", post(job(b'{"n":-9223372036854775809}')), 400),
            ("30-digit integer", post(job(b'{"n":123456789012345678901234567890}')), 400),
            ("5000-digit integer", post(job(b'{"n":' + big_digits + b"}")), 400),
            ("1e400", post(job(b'{"n":1e400}')), 400),
            ("-1e400", post(job(b'{"n":-1e400}')), 400),
            ("leading zero -012", post(job(b'{"n":-012}')), 400),
            ("1e-400", post(job(b'{"n":1e-400}')), 400),
            ("huge exponent in an array", post(job(b'{"n":[1,2,3e99999]}')), 400),
            ("NaN", post(job(b'{"n":NaN}')), 400),
            ("Infinity", post(job(b'{"n":Infinity}')), 400),
            ("-Infinity", post(job(b'{"n":-Infinity}')), 400),
            ("leading zero", post(job(b'{"n":012}')), 400),
            ("maxAttempts 1e400", post(job(b"{}", b',"maxAttempts":1e400')), 400),
            ("maxAttempts beyond int64", post(job(b"{}", b',"maxAttempts":99999999999999999999')),
             400),
            ("maxAttempts 2.5", post(job(b"{}", b',"maxAttempts":2.5')), 400),
            # Keys and text.
            ("$-prefixed key", post(job(b'{"$where":"1"}')), 400),
            ("escaped $ key", post(job(b'{"\\u0024where":"1"}')), 400),
            ("Extended JSON $numberLong", post(job(b'{"n":{"$numberLong":"5"}}')), 400),
            ("Extended JSON $date", post(job(b'{"d":{"$date":"2020-01-01T00:00:00Z"}}')), 400),
            ("Extended JSON $oid", post(job(b'{"o":{"$oid":"5f1f1f1f1f1f1f1f1f1f1f1f"}}')), 400),
            ("$ key deep in arrays", post(job(b'{"a":[[[{"b":[{"$set":1}]}]]]}')), 400),
            ("$ key at the top level", post(b'{"type":"compute","payload":{},"$x":1}'), 400),
            ("dotted key", post(job(b'{"a.b":1}')), 400),
            ("dotted key nested", post(job(b'{"a":{"b":{"c.d":1}}}')), 400),
            ("empty key", post(job(b'{"":1}')), 400),
            ("empty key nested", post(job(b'{"a":[{"":1}]}')), 400),
            ("invalid UTF-8 value", post(job(b'{"s":"\xff\xfe"}')), 400),
            ("invalid UTF-8 key", post(job(b'{"k\xe9y":1}')), 400),
            ("truncated UTF-8", post(job(b'{"s":"\xc3"}')), 400),
            ("NUL escaped in a value", post(job(b'{"s":"a\\u0000b"}')), 400),
            ("NUL escaped in a key", post(job(b'{"a\\u0000b":1}')), 400),
            ("raw NUL byte", post(job(b"{\"s\":1}") + b"\x00"), 400),
            # Structure.
            ("trailing text", post(job(b"{}") + b" x"), 400),
            ("two documents", post(job(b"{}") + job(b"{}")), 400),
            ("body is a string", post(b'"text"'), 400),
            ("body is null", post(b"null"), 400),
            ("body is true", post(b"true"), 400),
            ("byte order mark", post(b"\xef\xbb\xbf" + job(b"{}")), 400),
            ("unterminated string", post(b'{"type":"compute","payload":{"s":"abc}}'), 400),
            ("single quotes", post(b"{'type':'compute','payload':{}}"), 400),
            ("comment", post(b'{"type":"compute",/* c */"payload":{}}'), 400),
            ("payload null", post(job(b"null")), 400),
            ("type not a string", post(b'{"type":5,"payload":{}}'), 400),
            ("batch of 1001 jobs", post(b"[" + b",".join([job(b"{}")] * 1001) + b"]"), 413),
            ("batch with a $ key in its last job",
             post(b"[" + job(b"{}") + b"," + job(b'{"$x":1}') + b"]"), 400),
            # Content types.
            ("POST text/plain", post(job(b"{}"), {"Content-Type": "text/plain"}), 415),
            ("POST form", post(job(b"{}"), {"Content-Type": "application/x-www-form-urlencoded"}),
             415),
            ("POST multipart", post(job(b"{}"), {"Content-Type": "multipart/form-data; b=x"}), 415),
            ("POST application/xml", post(job(b"{}"), {"Content-Type": "application/xml"}), 415),
            ("PATCH text/plain", patch(b'{"status":"failed"}', {"Content-Type": "text/plain"}),
             415),
            # PATCH bodies.
            ("PATCH result nested 900 deep",
             patch(b'{"status":"completed","result":' + b"[" * 900), 400),
            ("PATCH body of [ up to the limit", patch(b"[" * (limit - 1)), 400),
            ("PATCH result with $ key", patch(b'{"status":"completed","result":{"$x":1}}'), 400),
            ("PATCH result with Extended JSON",
             patch(b'{"status":"completed","result":{"n":{"$numberLong":"1"}}}'), 400),
            ("PATCH result with dotted key", patch(b'{"status":"completed","result":{"a.b":1}}'),
             400),
            ("PATCH result with empty key", patch(b'{"status":"completed","result":{"":1}}'), 400),
            ("PATCH result not UTF-8", patch(b'{"status":"completed","result":{"s":"\xff"}}'), 400),
            ("PATCH result integer over int64",
             patch(b'{"status":"completed","result":{"n":18446744073709551616}}'), 400),
            ("PATCH result 1e400", patch(b'{"status":"completed","result":{"n":1e400}}'), 400),
            ("PATCH result 012", patch(b'{"status":"completed","result":{"n":012}}'), 400),
            ("PATCH result an array", patch(b'{"status":"completed","result":[1]}'), 400),
            ("PATCH attempts 1e400", patch(b'{"status":"failed","workerId":"w","attempts":1e400}'),
             400),
            ("PATCH leaseMs beyond int64",
             patch(b'{"status":"processing","leaseMs":99999999999999999999}'), 400),
            ("PATCH trailing text", patch(b'{"status":"failed"} {}'), 400),
            ("PATCH status not a string", patch(b'{"status":1}'), 400),
            ("PATCH error not a string", patch(b'{"status":"failed","error":{"a":1}}'), 400),
        ]
        check(len(cases) >= 60, f"only {len(cases)} cases")
        for what, send, status in cases:
            expect_error(send(), status, what)
            h = request(api, "GET", "/health")
            check(h.status == 200, f"{what}: the API is not healthy afterwards: {h}")
            after = st.counts()
            check(after == before, f"{what}: documents/messages changed: {before} -> {after}")
        after_doc = request(api, "GET", f"/jobs/{jid}", token=ADMIN).json()
        check(after_doc == before_doc, f"job changed: {before_doc} -> {after_doc}")

        # Bodies without a Content-Type are read as JSON.
        r = request(api, "POST", "/jobs", raw=job(b'{"input":"no type"}'), token=ADMIN,
                    headers={"Content-Type": None})
        check(r.status == 201, f"POST without a Content-Type: {r}")
        r = request(api, "POST", "/jobs", raw=job(b'{"input":"charset"}'), token=ADMIN,
                    headers={"Content-Type": "application/json; charset=utf-8"})
        check(r.status == 201, f"POST application/json; charset=utf-8: {r}")
        check(st.counts() == (3, 3), f"counted {st.counts()}")
        failed = False
    finally:
        st.stop(failed)


def test_payloads_over_the_kafka_and_bson_limits_are_refused_with_413():
    """A job whose Kafka message is over the producer's message.max.bytes,
    and a payload over 15 MiB as BSON: 413, nothing stored or published."""
    st = Stack()
    failed = True
    try:
        # The producer's default message.max.bytes (1,000,000) under a
        # body limit of 4 MiB.
        api = st.api(tokens=TOKENS, extra={"DJOB_BODY_MAX_BYTES": str(4 << 20)})
        body = b'{"type":"compute","payload":{"s":"' + b"x" * 1100000 + b'"}}'
        j = expect_error(request(api, "POST", "/jobs", raw=body, token=ADMIN), 413,
                         "message over message.max.bytes")
        check("message.max.bytes" in j["error"], f"message {j}")
        check(st.counts() == (0, 0), f"counted {st.counts()}")
        check(request(api, "GET", "/health").status == 200, "API not healthy")
        # A larger message.max.bytes: then the 15 MiB payload limit.
        api2 = st.api(tokens=TOKENS, extra={"DJOB_BODY_MAX_BYTES": str(20 << 20),
                                            "DJOB_KAFKA_MESSAGE_MAX_BYTES": "40000000"})
        body = b'{"type":"compute","payload":{"s":"' + b"x" * (16 << 20) + b'"}}'
        j = expect_error(request(api2, "POST", "/jobs", raw=body, token=ADMIN), 413,
                         "payload over 15 MiB")
        check("BSON" in j["error"], f"message {j}")
        check(st.counts() == (0, 0), f"counted {st.counts()}")
        check(request(api2, "GET", "/health").status == 200, "API not healthy")
        failed = False
    finally:
        st.stop(failed)


INTEGERS_BODY = (b'{"type":"compute","payload":{"echo":true,"max":9223372036854775807,'
                 b'"min":-9223372036854775808,"big":9007199254740993,"i32":2147483648,'
                 b'"negzero":-0,"negzerod":-0.0,"tenth":0.1,"e300":1e300,"one":1.0,'
                 b'"list":[9007199254740993,-9007199254740993,{"h":1e2,"m":-1}]}}')
INTEGERS_EXPECTED = {"echo": True, "max": 2**63 - 1, "min": -2**63, "big": 2**53 + 1,
                     "i32": 2**31, "negzero": 0, "negzerod": -0.0, "tenth": 0.1,
                     "e300": 1e300, "one": 1.0,
                     "list": [2**53 + 1, -(2**53 + 1), {"h": 100.0, "m": -1}]}


def same_numbers(got, want):
    """Equal, with the same JSON kind (integer or double) everywhere and the
    sign of -0.0."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            same_numbers(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            same_numbers(g, w) for g, w in zip(got, want))
    if isinstance(want, float):
        return isinstance(got, float) and got == want and math.copysign(1, got) == \
            math.copysign(1, want)
    return type(got) is type(want) and got == want


def integers_through(sink):
    # FerretDB 1.x stores -0.0 as 0.0 (README, Payloads); MongoDB and
    # mongo-java-server keep its sign.
    ferretdb = os.environ.get("DJOB_DEVSTACK_MONGO") == "ferretdb"
    expected = dict(INTEGERS_EXPECTED, negzerod=0.0) if ferretdb else INTEGERS_EXPECTED
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        st.worker(sink=sink, api_port=api, token=WORKER, tokens=TOKENS)
        r = request(api, "POST", "/jobs", raw=INTEGERS_BODY, token=SUBMIT)
        check(r.status == 201, f"POST: {r}")
        jid = r.json()["jobId"]
        doc = wait_status(api, jid, "completed", token=SUBMIT)
        raw = request(api, "GET", f"/jobs/{jid}", token=SUBMIT).body
        check(same_numbers(doc["payload"], expected), f"payload {doc['payload']}")
        # The handler got them exactly: it echoed its input as the result.
        check(same_numbers(doc["result"], {"echo": expected}), f"result {doc['result']}")
        for text in (b"9007199254740993", b"9223372036854775807", b"-9223372036854775808",
                     b"0.0" if ferretdb else b"-0.0", b"1e+300", b"0.1"):
            check(raw.count(text) >= 2, f"{text!r} not in payload and result: {raw[:600]!r}")
        # What is refused rather than changed.
        for bad in (b"9223372036854775808", b"1e400", b"-1e400", b"1e-400"):
            r = request(api, "POST", "/jobs", raw=b'{"type":"compute","payload":{"n":' + bad
                        + b"}}", token=SUBMIT)
            expect_error(r, 400, f"payload {bad!r}")
        failed = False
    finally:
        st.stop(failed)


def test_payload_integers_are_kept_exactly_through_handler_result_and_get():
    integers_through("store")
    integers_through("api")


def test_handler_results_with_bad_keys_fail_the_job_once():
    """A handler's result with a $-prefixed or dotted key, or text that is
    not UTF-8, is never stored: the job fails at once with the reason."""
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        st.worker(sink="store")
        st.worker(sink="api", api_port=api, token=WORKER, tokens=TOKENS)
        cases = [({"resultJson": '{"$set":{"a":1}}'}, "$"),
                 ({"resultJson": '{"a.b":1}'}, "."),
                 ({"resultJson": '{"n":99999999999999999999}'}, "64-bit"),
                 ({"resultJson": "[" * 100}, "levels"),
                 ({"resultBadUtf8": True}, "UTF8")]
        ids = []
        for payload, _ in cases:
            r = request(api, "POST", "/jobs", {"type": "compute", "payload": payload,
                                               "maxAttempts": 3}, token=SUBMIT)
            check(r.status == 201, f"POST {payload}: {r}")
            ids.append(r.json()["jobId"])
        for jid, (payload, word) in zip(ids, cases):
            doc = wait_status(api, jid, "failed", token=SUBMIT)
            check(doc["attempts"] == 1, f"{payload}: ran {doc['attempts']} times: {doc}")
            check("Handler result refused" in doc["error"] and word in doc["error"],
                  f"{payload}: error {doc['error']!r}")
            check("result" not in doc, f"{payload}: a result was stored: {doc}")
        failed = False
    finally:
        st.stop(failed)


def test_missing_or_wrong_token_401_wrong_role_403():
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        wport = st.worker(tokens=TOKENS, stopped=True)
        jid = submit(api, {"input": "t"}, token=SUBMIT)
        before = st.counts()
        body = {"type": "compute", "payload": {"input": "no"}}
        for what, tok, hdrs in [("no token", None, None),
                                ("wrong token", "sub-tok-2", None),
                                ("token prefix", "sub-tok", None),
                                ("empty bearer", None, {"Authorization": "Bearer "}),
                                ("basic auth", None, {"Authorization": "Basic c3ViOnRvaw=="})]:
            r = request(api, "POST", "/jobs", body, token=tok, headers=hdrs)
            expect_error(r, 401, f"POST /jobs with {what}")
            check(r.headers.get("www-authenticate", "").startswith("Bearer"),
                  f"{what}: WWW-Authenticate {r.headers}")
        expect_error(request(api, "GET", f"/jobs/{jid}"), 401, "GET without token")
        expect_error(request(api, "GET", "/jobs"), 401, "list without token")
        expect_error(request(api, "PATCH", f"/jobs/{jid}", {"status": "processing"}), 401,
                     "PATCH without token")
        expect_error(request(api, "PATCH", f"/jobs/{jid}", {"status": "processing"},
                             token=SUBMIT), 403, "PATCH with the submit role")
        expect_error(request(api, "DELETE", f"/jobs/{jid}", token=SUBMIT), 403,
                     "DELETE with the submit role")
        expect_error(request(api, "DELETE", f"/jobs/{jid}", token=WORKER), 403,
                     "DELETE with the worker role")
        expect_error(request(api, "POST", f"/jobs/{jid}/retry", token=WORKER), 403,
                     "retry with the worker role")
        expect_error(request(api, "POST", "/jobs", body, token=WORKER), 403,
                     "POST with the worker role")
        expect_error(request(wport, "POST", "/start"), 401, "worker /start without token")
        expect_error(request(wport, "POST", "/start", token=SUBMIT), 403,
                     "worker /start with the submit role")
        check(request(wport, "GET", "/health").json()["consumer"] == "stopped",
              "a refused /start started the consumer")
        check(st.counts() == before, "refused requests changed something")
        check(request(api, "GET", f"/jobs/{jid}", token=SUBMIT).json()["status"] == "queued",
              "job changed")
        # What each role may do.
        check(request(api, "GET", f"/jobs/{jid}", token=WORKER).status == 200, "worker GET")
        check(request(api, "GET", "/jobs?limit=5", token=SUBMIT).status == 200, "submit list")
        check(request(api, "GET", "/health").status == 200, "health needs no token")
        check(request(api, "GET", "/metrics").status == 200, "metrics need no token")
        r = request(api, "DELETE", f"/jobs/{jid}", token=ADMIN)
        check(r.status == 200 and r.json()["status"] == "cancelled", f"admin DELETE {r}")
        r = request(api, "POST", f"/jobs/{jid}/retry", token=ADMIN)
        check(r.status == 200 and r.json()["status"] == "queued", f"admin retry {r}")
        expect_error(request(api, "DELETE", f"/jobs/{uuid.uuid4()}", token=ADMIN), 404,
                     "DELETE of an unknown id")

        # Without tokens, a non-loopback address is refused at start.
        p = st.spawn("djob-api", [binary("DJOB_E2E_API"), "--port", str(free_port()),
                                  "--listen", "0.0.0.0"], {})
        try:
            rc = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            raise Failure("djob-api started on 0.0.0.0 without tokens")
        check(rc != 0, "djob-api exited 0 on 0.0.0.0 without tokens")
        with open(st.procs[-1][2]) as f:
            log = f.read()
        check("api.tokens" in log, f"no clear error: {log}")
        st.procs.pop()
        failed = False
    finally:
        st.stop(failed)


def test_auth_names_each_role_401_without_a_valid_token():
    """GET /auth: what the dashboard asks first. Each token's role and what
    it may do; 401 with WWW-Authenticate without a token or with a wrong
    one; on an API without tokens, admin for everyone."""
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        may = {"submit": {"read": True, "submit": True, "update": False, "admin": False},
               "worker": {"read": True, "submit": False, "update": True, "admin": False},
               "admin": {"read": True, "submit": True, "update": True, "admin": True}}
        for role, tok in [("submit", SUBMIT), ("worker", WORKER), ("admin", ADMIN)]:
            r = request(api, "GET", "/auth", token=tok)
            check(r.status == 200 and r.headers.get("content-type") == "application/json",
                  f"/auth with the {role} token: {r}")
            check(r.json() == {"tokens": True, "role": role, "may": may[role]},
                  f"/auth with the {role} token: {r.json()}")
            # What it says is what the API then allows.
            code = request(api, "DELETE", f"/jobs/{uuid.uuid4()}", token=tok).status
            check((code == 404) == may[role]["admin"], f"{role} DELETE answered {code}")
        for what, tok, hdrs in [("no token", None, None), ("wrong token", "adm-tok-4", None),
                                ("token prefix", "adm-tok", None),
                                ("basic auth", None, {"Authorization": "Basic YWRtOng="})]:
            r = request(api, "GET", "/auth", token=tok, headers=hdrs)
            expect_error(r, 401, f"/auth with {what}")
            check(r.headers.get("www-authenticate", "").startswith("Bearer"),
                  f"/auth with {what}: WWW-Authenticate {r.headers}")
        expect_error(request(api, "POST", "/auth", {}, token=ADMIN), 405, "POST /auth")
        check(request(api, "HEAD", "/auth", token=SUBMIT).status == 200, "HEAD /auth")

        open_api = st.api()
        for tok in (None, "anything"):
            r = request(open_api, "GET", "/auth", token=tok)
            check(r.status == 200 and r.json() == {"tokens": False, "role": "admin",
                                                   "may": may["admin"]},
                  f"/auth without tokens configured (token {tok}): {r}")
        # The dashboard's address without its slash leads to it.
        r = request(open_api, "GET", "/ui")
        check(r.status == 308 and r.headers.get("location") == "/ui/", f"GET /ui: {r}")
        r = request(open_api, "GET", "/ui/")
        check(r.status == 200 and r.headers.get("content-type") == "text/html; charset=utf-8"
              and b'src="app.js"' in r.body, f"GET /ui/: {r}")
        failed = False
    finally:
        st.stop(failed)


def test_wrong_method_405_with_allow_unknown_route_404():
    st = Stack()
    failed = True
    try:
        api = st.api()
        wport = st.worker(stopped=True)
        before = st.counts()
        jid = str(uuid.uuid4())
        for port, method, path, allow in [
                (api, "PUT", "/jobs", "GET, POST"),
                (api, "DELETE", "/jobs", "GET, POST"),
                (api, "POST", f"/jobs/{jid}", "GET, PATCH, DELETE"),
                (api, "PUT", f"/jobs/{jid}", "GET, PATCH, DELETE"),
                (api, "GET", f"/jobs/{jid}/retry", "POST"),
                (api, "POST", "/health", "GET"),
                (api, "DELETE", "/metrics", "GET"),
                (wport, "GET", "/start", "POST"),
                (wport, "PUT", "/stop", "POST"),
                (wport, "POST", "/health", "GET")]:
            r = request(port, method, path, raw=b"{}")
            expect_error(r, 405, f"{method} {path}")
            check(r.headers.get("allow") == allow, f"{method} {path}: Allow {r.headers}")
        for port, path in [(api, "/"), (api, "/nope"), (api, f"/jobs/{jid}/nope"),
                           (api, "/jobsx"), (wport, "/jobs"), (wport, "/")]:
            expect_error(request(port, "GET", path), 404, f"GET {path}")
        check(st.counts() == before, "refused requests changed something")
        failed = False
    finally:
        st.stop(failed)


def raw_exchange(port, data):
    """Send bytes as they are; the reply's status line, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return Response(int(lines[0].split()[1]), headers, body)


def test_methods_civetweb_refuses_get_json_405_and_malformed_requests_json_400():
    """TRACE and unknown methods, which civetweb itself refuses, get the
    route's 405 with Allow (404 off the routes), on both daemons; a request
    civetweb cannot parse gets a JSON 400, not civetweb's text page."""
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        wport = st.worker(stopped=True)
        jid = str(uuid.uuid4())
        for port, method, path, allow in [
                (api, "TRACE", "/health", "GET"),
                (api, "TRACE", "/jobs?status=queued", "GET, POST"),
                (api, "FROB", f"/jobs/{jid}", "GET, PATCH, DELETE"),
                (api, "TRACE", f"/jobs/{jid}/retry", "POST"),
                (api, "TRACE", "/openapi.json", "GET"),
                (wport, "TRACE", "/start", "POST"),
                (wport, "FROB", "/health", "GET")]:
            r = request(port, method, path)
            expect_error(r, 405, f"{method} {path}")
            check(r.headers.get("allow") == allow, f"{method} {path}: Allow {r.headers}")
        expect_error(request(api, "TRACE", "/nope"), 404, "TRACE /nope")
        r = raw_exchange(api, b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        expect_error(r, 400, "a header line without a colon")
        failed = False
    finally:
        st.stop(failed)


def test_openapi_json_is_docs_file_byte_for_byte_with_etag_and_304():
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        docs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                            "openapi.json")
        with open(docs, "rb") as f:
            want = f.read()
        r = request(api, "GET", "/openapi.json")  # no token: the description is public
        check(r.status == 200, f"GET /openapi.json: {r}")
        check(r.headers.get("content-type") == "application/json",
              f"content type {r.headers.get('content-type')}")
        check(r.body == want, f"GET /openapi.json differs from docs/openapi.json "
              f"({len(r.body)} and {len(want)} bytes)")
        doc = r.json()
        check(isinstance(doc, dict) and re.fullmatch(r"3\.1\.\d+", str(doc.get("openapi"))),
              f"openapi is {doc.get('openapi')!r}, not 3.1.x")
        check(doc.get("paths", {}).get("/jobs", {}).get("post"), "no POST /jobs in the paths")
        etag = r.headers.get("etag", "")
        check(re.fullmatch(r'"[^"]+"', etag), f"no strong ETag: {r.headers}")
        r2 = request(api, "GET", "/openapi.json", headers={"If-None-Match": etag})
        check(r2.status == 304 and r2.body == b"", f"If-None-Match {etag}: {r2}")
        check(r2.headers.get("etag") == etag, f"304 without the same ETag: {r2.headers}")
        r3 = request(api, "GET", "/openapi.json", headers={"If-None-Match": '"other"'})
        check(r3.status == 200 and r3.body == want, f"If-None-Match of another ETag: {r3}")
        failed = False
    finally:
        st.stop(failed)


def test_batch_idempotency_key_list_pages_cancel_and_retry():
    st = Stack()
    failed = True
    try:
        api = st.api()
        # A batch: 201 {"jobIds": [...]} (types no worker here runs).
        batch = [{"type": "data", "payload": {"n": i}} for i in range(5)]
        r = request(api, "POST", "/jobs", batch)
        check(r.status == 201 and len(set(r.json()["jobIds"])) == 5, f"batch: {r}")
        ids = r.json()["jobIds"]
        # Idempotency-Key: the repeat answers 200 with the first job.
        one = {"type": "file", "payload": {"path": "a"}}
        r1 = request(api, "POST", "/jobs", one, headers={"Idempotency-Key": "key-1"})
        r2 = request(api, "POST", "/jobs", one, headers={"Idempotency-Key": "key-1"})
        check(r1.status == 201 and r2.status == 200 and r1.json() == r2.json(),
              f"idempotent repeat: {r1} then {r2}")
        check(st.counts() == (6, 6), f"counted {st.counts()}")
        # List: newest first, pages joined by the cursor, filters.
        seen, after = [], None
        while True:
            q = "/jobs?type=data&limit=2" + (f"&after={after}" if after else "")
            page = request(api, "GET", q).json()
            check(len(page["jobs"]) <= 2, f"page {page}")
            seen += [j["_id"] for j in page["jobs"]]
            after = page["next"]
            if not after:
                break
        check(sorted(seen) == sorted(ids) and len(seen) == 5, f"pages {seen} vs {ids}")
        check(request(api, "GET", "/jobs?status=queued&type=file").json()["jobs"][0]["_id"]
              == r1.json()["jobId"], "filter by status and type")
        check(request(api, "GET", "/jobs?status=completed").json() == {"jobs": [], "next": None},
              "empty page")
        # Cancel, cancel again (409), retry (queued again and published).
        r = request(api, "DELETE", f"/jobs/{ids[0]}")
        check(r.status == 200 and r.json()["status"] == "cancelled", f"cancel {r}")
        expect_error(request(api, "DELETE", f"/jobs/{ids[0]}"), 409, "second cancel")
        r = request(api, "POST", f"/jobs/{ids[0]}/retry")
        check(r.status == 200 and r.json()["status"] == "queued", f"retry {r}")
        check(st.counts() == (6, 7), f"a retry publishes once: {st.counts()}")
        failed = False
    finally:
        st.stop(failed)


def test_two_api_replicas_submit_a_periodic_due_time_once():
    """Two djob-api replicas, each with its scheduler sweeping every 200 ms,
    one `* * * * *` schedule: its first due time gives exactly one job (one
    document, one Kafka message) carrying the schedule and the due time."""
    st = Stack()
    failed = True
    try:
        fast = {"DJOB_SCHEDULER_INTERVAL_MS": "200"}
        a = st.api(tokens=TOKENS, extra=fast)
        b = st.api(tokens=TOKENS, extra=fast)
        body = {"name": "tick", "cron": "* * * * *",
                "job": {"type": "data", "payload": {"n": 1}, "maxAttempts": 2}}
        expect_error(request(a, "POST", "/schedules", body, token=SUBMIT), 403, "submitter")
        r = request(a, "POST", "/schedules", body, token=ADMIN)
        check(r.status == 201 and r.json()["name"] == "tick", f"create: {r}")
        due = r.json()["nextRunAt"]
        expect_error(request(b, "POST", "/schedules", body, token=ADMIN), 409, "same name")
        for bad, field in [({**body, "name": "x y"}, "name"),
                           ({**body, "name": "c", "cron": "61 * * * *"}, "minute"),
                           ({**body, "name": "c", "timezone": "Mars/Base"}, "timezone"),
                           ({**body, "name": "c", "job": {"type": ""}}, "job.type")]:
            r = request(b, "POST", "/schedules", bad, token=ADMIN)
            expect_error(r, 400, field)
            check(field in r.json()["error"], f"{field} not named: {r}")
        lst = request(b, "GET", "/schedules", token=ADMIN).json()["schedules"]
        check([x["name"] for x in lst] == ["tick"], f"list: {lst}")
        # The due time (at most 60 s away) and a few sweeps of both after it.
        due_s = time.mktime(time.strptime(due[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        time.sleep(max(0.0, due_s - time.time()) + 4)
        jobs = [j for j in request(a, "GET", "/jobs?type=data", token=ADMIN).json()["jobs"]
                if j.get("schedule") == "tick"]
        check(len(jobs) == 1, f"{len(jobs)} jobs for due time {due}: {jobs}")
        check(jobs[0]["dueAt"] == due and jobs[0]["maxAttempts"] == 2 and
              jobs[0]["payload"] == {"n": 1}, f"job {jobs[0]}")
        docs, msgs = st.counts()
        check((docs, msgs) == (1, 1), f"{docs} documents, {msgs} messages for one due time")
        nxt = request(b, "GET", "/schedules/tick", token=ADMIN).json()["nextRunAt"]
        check(nxt > due, f"nextRunAt {nxt} not advanced past {due}")
        r = request(b, "DELETE", "/schedules/tick", token=ADMIN)
        check(r.status == 200, f"delete {r}")
        expect_error(request(a, "GET", "/schedules/tick", token=ADMIN), 404, "deleted")
        print(f"ok 2 replicas: due time {due} gave 1 job, {docs} document, {msgs} message; "
              f"4 bad bodies 400, duplicate 409, submitter 403, deleted 404")
        failed = False
    finally:
        st.stop(failed)


def test_concurrent_200_submits_give_200_distinct_ids_all_completed():
    st = Stack()
    failed = True
    try:
        api = st.api()
        st.worker(concurrency=8)
        threads, per = 8, 25
        ids, errors, lock = [], [], threading.Lock()

        def client(n):
            conn = http.client.HTTPConnection("127.0.0.1", api, timeout=60)
            try:
                for i in range(per):
                    r = request(api, "POST", "/jobs",
                                {"type": "compute", "payload": {"input": f"c{n}-{i}"}},
                                conn=conn)
                    with lock:
                        if r.status == 201:
                            ids.append(r.json()["jobId"])
                        else:
                            errors.append(repr(r))
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))
            finally:
                conn.close()

        ts = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(not errors, f"{len(errors)} submits failed: {errors[:3]}")
        check(len(ids) == 200 and len(set(ids)) == 200, f"{len(set(ids))} distinct of {len(ids)}")
        deadline = time.time() + 120
        while True:
            r = request(api, "GET", "/jobs?status=completed&limit=1000")
            done = r.json()["jobs"]
            if len(done) == 200 or time.time() > deadline:
                break
            time.sleep(1)
        if len(done) != 200:
            rest = [d for d in request(api, "GET", "/jobs?limit=1000").json()["jobs"]
                    if d["status"] != "completed"]
            raise Failure(f"{len(done)} of 200 completed; others: {rest[:3]}")
        check({d["_id"] for d in done} == set(ids), "completed ids differ from submitted ids")
        for d in done:
            check(d["result"]["value"] == sha256(d["payload"]["input"]), f"bad result {d}")
            check(d["attempts"] == 1, f"ran more than once: {d}")
        check(st.counts() == (200, 200), f"counted {st.counts()}")
        failed = False
    finally:
        st.stop(failed)


def workers_until(port, want, token=None, timeout=60):
    """GET /workers until want(answer) is None; want returns what still
    differs. Every answer must be 200 with the documented shape."""
    deadline = time.time() + timeout
    why = None
    while time.time() < deadline:
        r = request(port, "GET", "/workers", token=token)
        check(r.status == 200, f"GET /workers: {r}")
        j = r.json()
        check(set(j) == {"asOf", "group", "state", "workers", "unassigned", "lag"},
              f"/workers keys {sorted(j)}")
        parts = [p for w in j["workers"] for p in w["partitions"]] + j["unassigned"]
        for p in parts:
            check(set(p) == {"topic", "partition", "committed", "end", "lag"}, f"partition {p}")
            frm = p["committed"] if p["committed"] >= 0 else 0
            check(p["lag"] == max(0, p["end"] - frm), f"lag of {p}")
        for w in j["workers"]:
            check(w["lag"] == sum(p["lag"] for p in w["partitions"]), f"worker lag {w}")
        check(j["lag"]["total"] == sum(p["lag"] for p in parts), f"total lag {j['lag']}")
        why = want(j)
        if why is None:
            return j
        time.sleep(0.2)
    raise Failure(f"/workers did not show it within {timeout} s: {why}; last {j}")


def test_workers_show_members_partitions_and_lag():
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        compute = st.prefix + "compute"
        # Read permission, like GET /jobs.
        expect_error(request(api, "GET", "/workers"), 401, "GET /workers without a token")
        expect_error(request(api, "POST", "/workers", token=ADMIN), 405, "POST /workers")
        # No worker has ever joined: the group is Empty.
        j = workers_until(api, lambda j: None, token=SUBMIT)
        check(j["group"] == st.group and j["state"] == "Empty" and j["workers"] == [],
              f"unused group {j}")

        # Two workers with their own ids share compute's 3 partitions.
        ids = [st.group + "-a", st.group + "-b"]
        wports = [st.worker(worker_id=i) for i in ids]

        def both_hold_compute(j):
            held = sorted((p["topic"], p["partition"]) for w in j["workers"]
                          for p in w["partitions"])
            if j["state"] != "Stable" or [w["id"] for w in j["workers"]] != ids:
                return f"state {j['state']}, members {[w['id'] for w in j['workers']]}"
            if held != [(compute, 0), (compute, 1), (compute, 2)]:
                return f"held {held}"
            if not all(w["partitions"] for w in j["workers"]):
                return "a worker holds nothing"
            return None
        j = workers_until(api, both_hold_compute, token=WORKER)
        check(all(w["host"] for w in j["workers"]), f"hosts {j['workers']}")

        # Their jobs complete; the committed offsets reach the ends.
        n = 12
        jobs = [submit(api, {"input": f"w{i}"}, token=SUBMIT) for i in range(n)]
        for jid in jobs:
            wait_status(api, jid, "completed", token=SUBMIT)

        def caught_up(j):
            parts = [p for w in j["workers"] for p in w["partitions"]]
            if sum(p["end"] for p in parts) < n:
                return f"ends {[p['end'] for p in parts]}"
            if j["lag"]["total"] != 0 or any(p["committed"] != p["end"] for p in parts):
                return f"lag {j['lag']}"
            return None
        j = workers_until(api, caught_up, token=SUBMIT, timeout=60)
        check(both_hold_compute(j) is None, f"after the jobs {j}")
        # The API made every type's topic: those no worker reads are unassigned.
        un = {(p["topic"], p["partition"]) for p in j["unassigned"]}
        check(un == {(st.prefix + t, k) for t in TYPES if t != "compute" for k in range(3)},
              f"unassigned {sorted(un)}")
        check(j["lag"]["byTopic"] == {st.prefix + t: 0 for t in TYPES}, f"byTopic {j['lag']}")

        # Workers stopped: the group empties and new jobs wait as lag.
        for port in wports:
            r = request(port, "POST", "/stop")
            check(r.status == 200, f"POST /stop: {r}")
        j = workers_until(api, lambda j: None if j["state"] == "Empty" and not j["workers"]
                          else f"state {j['state']}", token=SUBMIT)
        m = 5
        waiting = [submit(api, {"input": f"later{i}"}, token=SUBMIT) for i in range(m)]
        waiting.append(submit(api, {"input": "f"}, token=SUBMIT, type_="file"))
        j = workers_until(api, lambda j: None if j["lag"]["total"] == m + 1
                          else f"lag {j['lag']}", token=SUBMIT, timeout=20)
        check(j["lag"]["byTopic"][compute] == m and j["lag"]["byTopic"][st.prefix + "file"] == 1,
              f"lag by topic {j['lag']}")
        check(len(j["unassigned"]) == 3 * len(TYPES), f"unassigned {j['unassigned']}")
        # The file job's partition had nothing committed: -1, lag from the start.
        fp = [p for p in j["unassigned"] if p["topic"] == st.prefix + "file" and p["end"] == 1]
        check(len(fp) == 1 and fp[0]["committed"] == -1 and fp[0]["lag"] == 1, f"file {fp}")
        for jid in waiting:
            r = request(api, "GET", f"/jobs/{jid}", token=SUBMIT)
            check(r.status == 200 and r.json()["status"] == "queued", f"waiting job {r}")

        r = request(api, "GET", "/metrics")
        check((metric(r.body.decode(), "djob_http_requests_total", route="/workers",
                      method="GET", code="200") or 0) > 0, "no /workers in the metrics")

        # Kafka that does not answer: 503 with one sentence, in seconds.
        dead = free_port()
        port = free_port()
        p = st.spawn("djob-api", [binary("DJOB_E2E_API"), "--port", str(port)],
                     {"DJOB_KAFKA_BROKERS": f"127.0.0.1:{dead}"})
        deadline = time.time() + 30
        while True:
            check(p.poll() is None, f"djob-api without Kafka exited {p.returncode}")
            try:
                t0 = time.time()
                r = request(port, "GET", "/workers")
                break
            except OSError:
                check(time.time() < deadline, "djob-api without Kafka never listened")
                time.sleep(0.1)
        expect_error(r, 503, "GET /workers without Kafka")
        check(time.time() - t0 < 8, f"503 took {time.time() - t0:.1f} s")
        failed = False
    finally:
        st.stop(failed)


def main(fn):
    """Runs case CASE (argv[1]) as fn() and says ok or FAIL: exit status 0,
    1 when it failed, 2 when there is no such case (fn None). The other
    suites' scripts (flood_test, sink_tls_test, tests/cli) end with it."""
    if not fn:
        print(f"unknown case {CASE}", file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        fn()
    except Failure as e:
        print(f"FAIL {CASE}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"FAIL {CASE}: {e} (is the dev stack up? scripts/devstack up)", file=sys.stderr)
        return 1
    print(f"ok {CASE} ({time.time() - t0:.1f} s)")
    return 0


def progress_and_cancel(sink):
    """A running handler's progress shows in GET; DELETE reaches it
    (should_stop within 1 s) and the job ends cancelled without a result."""
    import tempfile
    stop_file = os.path.join(tempfile.mkdtemp(prefix="djob-e2e-"), "stopped")
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        st.worker(sink=sink, api_port=api, token=WORKER, tokens=TOKENS)
        jid = submit(api, {"input": "p", "stopFile": stop_file}, token=SUBMIT)
        wait_status(api, jid, "processing", token=SUBMIT)
        seen = set()
        deadline = time.time() + 15
        while time.time() < deadline and len(seen) < 3:
            doc = request(api, "GET", f"/jobs/{jid}", token=SUBMIT).json()
            prog = doc.get("progress")
            if prog:
                check(prog["message"] == f"step {int(prog['value'])}", f"progress {prog}")
                check(prog["updatedAt"].endswith("Z"), f"progress {prog}")
                seen.add(prog["value"])
            time.sleep(0.3)
        check(len(seen) >= 3, f"progress values seen in GET: {sorted(seen)}")
        cancelled_ms = time.time() * 1000
        r = request(api, "DELETE", f"/jobs/{jid}", token=ADMIN)
        check(r.status == 200, f"DELETE: {r}")
        deadline = time.time() + 5
        while time.time() < deadline and not os.path.exists(stop_file):
            time.sleep(0.02)
        check(os.path.exists(stop_file), "the handler never saw should_stop")
        time.sleep(0.05)
        with open(stop_file) as f:
            stop_ms, steps = (int(x) for x in f.read().split())
        delay = (stop_ms - cancelled_ms) / 1000
        check(delay <= 1.0, f"should_stop turned true {delay:.3f} s after DELETE")
        time.sleep(1.0)  # the handler's outcome has been sent by now
        doc = request(api, "GET", f"/jobs/{jid}", token=SUBMIT).json()
        check(doc["status"] == "cancelled", f"final {doc}")
        check("result" not in doc, f"result written: {doc}")
        # Coalesced: the handler set progress `steps` times (every 20 ms);
        # GET saw only a few distinct values, one write per second at most.
        print(f"{sink} sink: {steps} set_progress calls, {len(seen)} progress values seen, "
              f"should_stop {delay * 1000:.0f} ms after DELETE, final {doc['status']}")
        failed = False
    finally:
        st.stop(failed)
        import shutil
        shutil.rmtree(os.path.dirname(stop_file), ignore_errors=True)


def test_progress_shows_in_get_and_cancel_reaches_the_running_handler():
    progress_and_cancel("store")
    progress_and_cancel("api")


if __name__ == "__main__":
    sys.exit(main(globals().get("test_" + CASE)))
