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
                             stderr=subprocess.STDOUT)
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
               concurrency=4):
        port = free_port()
        argv = [binary("DJOB_E2E_WORKER"), "--port", str(port), "--sink", sink,
                "--plugin", binary("DJOB_E2E_PLUGIN"), "--set", f"concurrency={concurrency}"]
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
                        if "Sanitizer" not in line and not line.startswith(("=", " ", "#")):
                            errors.append(f"{name} log line {n} is not JSON: {line[:120]!r}")
                            break
        if errors:
            raise Failure("; ".join(errors))


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


def main():
    fn = globals().get("test_" + CASE)
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


if __name__ == "__main__":
    sys.exit(main())
