#!/usr/bin/env python3
"""Fault tests: djob-api and djob-worker processes, started here, against
the live dev stack, while workers and APIs are killed with SIGKILL and the
Kafka broker and FerretDB are stopped and restarted.

usage: fault_test.py <case>

Every case has its own topic prefix, consumer group and collection. The
paths come from DJOB_FAULT_API, DJOB_FAULT_WORKER, DJOB_FAULT_PLUGIN (a
compute handler that appends every run to a log file), DJOB_FAULT_COUNT
(tests/e2e/e2e_count) and DJOB_FAULT_DEVSTACK (set by meson). Servers are
stopped only by the case that needs it and always started again, also when
the case fails or is killed with SIGTERM. Each case prints the counts it
checked. Standard library only.
"""
import collections
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import e2e_test  # noqa: E402  (drop: a passed case's collection, topics and group)

CASE = sys.argv[1] if len(sys.argv) > 1 else "?"
TYPES = ["compute", "file", "blockchain", "data"]


class Failure(Exception):
    pass


class Terminated(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


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


def request(port, method, path, body=None, headers=None, timeout=60):
    """One request: (status, parsed JSON or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers=h)
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


class Stack:
    """The daemons of one case, on free ports, with this case's names."""

    def __init__(self, env=None):
        tag = "fault%d%d" % (os.getpid(), int(time.time() * 1000) % 10**9)
        self.prefix = tag + "."
        self.group = tag
        self.coll = tag
        self.dir = tempfile.mkdtemp(prefix="djob-fault-")
        self.runlog = os.path.join(self.dir, "runs.log")
        self.base_env = env or {}
        self.procs = []  # [name, Popen, log path, expected to be alive]

    def env(self, extra):
        e = dict(os.environ)
        for k in ("DJOB_API_TOKENS", "DJOB_TOKEN", "DJOB_API_LISTEN", "DJOB_SINK",
                  "DJOB_PLUGINS", "DJOB_FAULT"):
            e.pop(k, None)
        e.update({
            "DJOB_TOPIC_PREFIX": self.prefix,
            "DJOB_GROUP_ID": self.group,
            "DJOB_MONGO_COLLECTION": self.coll,
            "DJOB_LOG_LEVEL": "info",
            "DJOB_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "DJOB_TOPIC_PARTITIONS": "3",
            "DJOB_FAULT_RUNLOG": self.runlog,
        })
        e.update(self.base_env)
        e.update(extra or {})
        return e

    def spawn(self, name, argv, extra_env):
        log = os.path.join(self.dir, f"{name}-{len(self.procs)}.log")
        p = subprocess.Popen(argv, env=self.env(extra_env), stdout=open(log, "w"),
                             stderr=subprocess.STDOUT)
        self.procs.append([name, p, log, True])
        return p

    def wait_ready(self, p, port, name, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                raise Failure(f"{name} exited with {p.returncode} at start")
            try:
                if request(port, "GET", "/health", timeout=10)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failure(f"{name} did not answer /health within {timeout} s")

    def api(self, extra=None, name="djob-api"):
        port = free_port()
        p = self.spawn(name, [binary("DJOB_FAULT_API"), "--port", str(port)], extra)
        self.wait_ready(p, port, name)
        return port, p

    def worker(self, concurrency=4, extra=None):
        port = free_port()
        argv = [binary("DJOB_FAULT_WORKER"), "--port", str(port),
                "--plugin", binary("DJOB_FAULT_PLUGIN"), "--set", f"concurrency={concurrency}"]
        p = self.spawn("djob-worker", argv, extra)
        self.wait_ready(p, port, "djob-worker")
        return port, p

    def killed(self, p):
        """p was killed on purpose: it need not be alive at the end."""
        for e in self.procs:
            if e[1] is p:
                e[3] = False

    def dead_daemons(self):
        return [f"{n} (pid {p.pid}) exited with {p.returncode}"
                for n, p, _, alive in self.procs if alive and p.poll() is not None]

    def counts(self, coll=None, topics=True):
        """(documents in the collection, messages in this case's topics)."""
        argv = [binary("DJOB_FAULT_COUNT"), coll or self.coll]
        if topics:
            argv += [self.prefix + t for t in TYPES]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        check(out.returncode == 0, f"e2e_count failed: {out.stderr.strip()}")
        docs, msgs = out.stdout.split()
        return int(docs), int(msgs)

    def jobs(self, port):
        """Every job of the collection, through GET /jobs pages."""
        out, after = [], None
        while True:
            q = "/jobs?limit=1000" + (f"&after={after}" if after else "")
            st, page = request(port, "GET", q, timeout=120)
            check(st == 200, f"GET {q}: {st} {page!r:.300}")
            out += page["jobs"]
            after = page["next"]
            if not after:
                return out

    def runs(self):
        """The handler runs: [(kind S|E, job id, pid, attempt)]."""
        if not os.path.exists(self.runlog):
            return []
        with open(self.runlog) as f:
            return [(k, j, int(p), int(a)) for k, j, p, a in (line.split() for line in f)]

    def wait_completed(self, port, ids, timeout):
        """Wait until every job in ids is completed; returns {id: doc}."""
        want = set(ids)
        deadline = time.time() + timeout
        last, progress = -1, time.time()
        while True:
            docs = {d["_id"]: d for d in self.jobs(port)}
            done = [i for i in want if docs.get(i, {}).get("status") == "completed"]
            bad = [docs[i] for i in want if docs.get(i, {}).get("status") in
                   ("failed", "cancelled")]
            check(not bad, f"{len(bad)} jobs ended badly, e.g. {bad[:2]}")
            if len(done) == len(want):
                return docs
            if len(done) != last:
                say(f"  {len(done)} of {len(want)} completed")
                last, progress = len(done), time.time()
            dead = self.dead_daemons()
            check(not dead, f"daemons died: {dead}")
            # Retries and expired leases need seconds, not minutes.
            if time.time() > deadline or time.time() - progress > 180:
                rest = collections.Counter(docs.get(i, {}).get("status", "missing")
                                           for i in want if i not in done)
                raise Failure(f"{len(done)} of {len(want)} completed, the last progress "
                              f"{time.time() - progress:.0f} s ago; the others: {dict(rest)}")
            time.sleep(3)  # listing every job is not free on FerretDB

    def stop(self, failed):
        """SIGTERM every daemon still running; each must exit 0."""
        errors = self.dead_daemons()
        for name, p, log, alive in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    errors.append(f"{name} did not stop within 90 s of SIGTERM")
                    continue
                if p.returncode != 0:
                    errors.append(f"{name} exited with {p.returncode} after SIGTERM")
        if failed or errors:
            for name, p, log, alive in self.procs:
                with open(log, errors="replace") as f:
                    lines = f.readlines()
                sys.stderr.write(f"---- {name} ({log}), last lines ----\n")
                sys.stderr.writelines(lines[-30:])
        if errors:
            raise Failure("; ".join(errors))
        if not failed:
            e2e_test.drop(binary("DJOB_FAULT_COUNT"), self.coll, self.prefix, self.group)


def submit_many(port, payloads, threads=4):
    """POST each payload as a compute job from `threads` threads; returns
    the job ids in payload order. Every submit must answer 201."""
    ids = [None] * len(payloads)
    errors = []

    def run(k):
        for i in range(k, len(payloads), threads):
            try:
                st, body = request(port, "POST", "/jobs",
                                   {"type": "compute", "payload": payloads[i]})
            except OSError as e:
                errors.append(f"submit {i}: {e}")
                return
            if st != 201:
                errors.append(f"submit {i}: {st} {body!r:.200}")
                return
            ids[i] = body["jobId"]

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errors, f"{len(errors)} submits failed: {errors[:3]}")
    return ids


def completed_entries(doc):
    return sum(1 for h in doc.get("history", []) if h.get("status") == "completed")


def check_runs(runs, docs, ids):
    """The fencing invariant: no (job, attempt) ran twice, the job's last
    attempt ran, and its history holds exactly one completed entry, the last
    one, for that attempt (entries in attempt order). An earlier attempt may
    have been claimed and never run (its claim was written while the store
    went away, or its worker died before the handler): its lease ran out and
    a later attempt took over. Returns {job: [(pid, attempt)]}."""
    per_job = collections.defaultdict(list)
    for k, j, p, a in runs:
        if k == "S":
            per_job[j].append((p, a))
    check(set(per_job) == set(ids),
          f"runs of {len(set(per_job) - set(ids))} unknown jobs, "
          f"{len(set(ids) - set(per_job))} jobs never run")
    for j in ids:
        d = docs[j]
        attempts = sorted(a for p, a in per_job[j])
        hist = d.get("history", [])
        check(len(set(attempts)) == len(attempts), f"job {j} ran an attempt twice: {attempts}")
        check(attempts and attempts[-1] == d["attempts"],
              f"job {j} ran attempts {attempts} but has attempts {d['attempts']}: {d}")
        check(completed_entries(d) == 1 and hist[-1]["status"] == "completed"
              and hist[-1]["attempt"] == d["attempts"], f"job {j} history {hist}")
        order = [h["attempt"] for h in hist]
        check(order == sorted(set(order)), f"job {j}: history out of attempt order: {hist}")
    return per_job


# ---- cases ----

def test_worker_killed_mid_run_of_500_jobs_each_completed_once():
    n = 500
    # The default lease (30 s): long enough that a live worker keeps its
    # jobs on a slow, shared FerretDB; the killed worker's jobs wait that
    # long to run again.
    st = Stack()
    failed = True
    try:
        api, _ = st.api()
        _, w1 = st.worker()
        _, w2 = st.worker()
        payloads = [{"input": f"kill-{i}", "sleepMs": 100} for i in range(n)]
        result = {}
        sub = threading.Thread(target=lambda: result.update(ids=submit_many(api, payloads)))
        t0 = time.time()
        sub.start()
        # SIGKILL the first worker while it is inside a handler, once a
        # good part of the jobs has run.
        victim = None
        deadline = time.time() + 300
        while victim is None:
            check(time.time() < deadline, "the workers did not reach 150 runs in 300 s")
            runs = st.runs()
            ends = sum(1 for r in runs if r[0] == "E")
            open_runs = collections.Counter()
            for k, j, p, a in runs:
                open_runs[(j, p, a)] += 1 if k == "S" else -1
            busy = {p for (j, p, a), c in open_runs.items() if c > 0}
            if ends >= 150 and w1.pid in busy:
                w1.send_signal(signal.SIGKILL)
                w1.wait()
                st.killed(w1)
                victim = w1.pid
                say(f"SIGKILL worker {victim} after {ends} runs ended "
                    f"({time.time() - t0:.1f} s into the run)")
            else:
                time.sleep(0.02)
        sub.join()
        check(result.get("ids") and len(set(result["ids"])) == n, "not every submit answered 201")
        ids = result["ids"]
        docs = st.wait_completed(api, ids, timeout=600)
        elapsed = time.time() - t0
        time.sleep(3)  # redelivered messages settle (they must be skipped)
        runs = st.runs()
        docs = {d["_id"]: d for d in st.jobs(api)}
        check(len(docs) == n, f"{len(docs)} documents, expected {n}")
        once = 0
        for i, jid in enumerate(ids):
            d = docs[jid]
            check(d["status"] == "completed", f"job {jid} is {d['status']}")
            check(d["result"]["value"] == sha256(f"kill-{i}"), f"bad result {d}")
            check(completed_entries(d) == 1, f"job {jid} completed {completed_entries(d)} "
                  f"times in its history: {d['history']}")
            once += 1
        per_job = check_runs(runs, docs, ids)
        again = {j: r for j, r in per_job.items() if len(r) > 1}
        killed_runs = sum(1 for r in per_job.values() for p, a in r if p == victim)
        # Jobs the killed worker held run again once its lease ran out; a
        # live worker's job runs again only when writing its outcome took
        # longer than the lease (a very slow store), and then under a new
        # attempt number, fenced off from the old one.
        after_kill = [j for j, r in again.items()
                      if any(p == victim and a < len(r) for p, a in r)]
        others = len(again) - len(after_kill)
        check(after_kill, "no job held by the killed worker ran again")
        check(len(after_kill) <= 4, f"{len(after_kill)} jobs of the killed worker ran again; "
              "it held at most 4 (concurrency)")
        _, msgs = st.counts()
        print(f"counts: submitted {n} (all 201), completed {once}, each with exactly 1 "
              f"completed history entry, for its last attempt; handler runs "
              f"{sum(len(r) for r in per_job.values())} ({killed_runs} on the killed worker), "
              f"0 (job, attempt) run twice; {len(after_kill)} jobs held by the killed worker "
              f"ran again on a new attempt, {others} others after a lease expired on a live "
              f"worker; Kafka messages {msgs}; {elapsed:.1f} s for the {n} jobs")
        failed = False
    finally:
        st.stop(failed)


def test_api_killed_between_insert_and_produce_job_still_completes():
    check(os.environ.get("DJOB_FAULT_INJECTION_BUILT") == "1",
          "this build has no fault-injection points: configure it with "
          "meson setup -Dfault_injection=true (scripts/test does)")
    grace_ms = 2000
    st = Stack({"DJOB_SCHEDULER_GRACE_MS": str(grace_ms)})
    failed = True
    try:
        port1, api1 = st.api({"DJOB_FAULT": "crash_after_insert"}, name="djob-api-faulty")
        st.worker()
        try:
            st_, body = request(port1, "POST", "/jobs",
                                {"type": "compute", "payload": {"input": "outbox"}},
                                timeout=30)
            raise Failure(f"the faulty API answered {st_} {body!r:.200} instead of dying")
        except (http.client.HTTPException, OSError):
            pass
        try:
            api1.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure("the faulty API is still running")
        check(api1.returncode == -signal.SIGKILL, f"faulty API exited with {api1.returncode}")
        st.killed(api1)
        t_kill = time.time()
        docs, msgs = st.counts()
        outbox, _ = st.counts(st.coll + "_outbox", topics=False)
        check((docs, msgs, outbox) == (1, 0, 1),
              f"after the crash: {docs} jobs, {msgs} messages, {outbox} outbox entries; "
              "expected 1, 0, 1")
        # A restarted API (its scheduler) publishes the job from the outbox.
        port2, _ = st.api(name="djob-api-restarted")
        jobs = st.jobs(port2)
        check(len(jobs) == 1 and jobs[0]["status"] == "queued", f"jobs: {jobs}")
        jid = jobs[0]["_id"]
        doc = st.wait_completed(port2, [jid], timeout=120)[jid]
        took = time.time() - t_kill
        check(doc["result"]["value"] == sha256("outbox") and doc["attempts"] == 1,
              f"job {doc}")
        check(completed_entries(doc) == 1, f"history {doc['history']}")
        docs, msgs = st.counts()
        outbox, _ = st.counts(st.coll + "_outbox", topics=False)
        runs = [r for r in st.runs() if r[0] == "S"]
        check((docs, msgs, outbox, len(runs)) == (1, 1, 0, 1),
              f"after completion: {docs} jobs, {msgs} messages, {outbox} outbox entries, "
              f"{len(runs)} runs; expected 1, 1, 0, 1")
        print(f"counts: faulty API killed by SIGKILL after the insert with 1 job, 0 messages, "
              f"1 outbox entry; the restarted API's scheduler published it (grace {grace_ms} "
              f"ms): 1 job completed on attempt 1, 1 message, 0 outbox entries, 1 handler run; "
              f"{took:.1f} s from the crash to completed")
        failed = False
    finally:
        st.stop(failed)


def devstack(*args, timeout=180):
    t0 = time.time()
    out = subprocess.run([os.environ.get("DJOB_FAULT_DEVSTACK", "scripts/devstack"), *args],
                         capture_output=True, text=True, timeout=timeout)
    say(f"devstack {' '.join(args)}: exit {out.returncode} in {time.time() - t0:.1f} s")
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
    return out.returncode


def test_kafka_and_mongo_stopped_10s_every_accepted_job_completes():
    n = 500
    outage = 10
    for svc in ("kafka", "mongo"):
        check(devstack("status", svc) == 0,
              f"{svc} is not a dev stack server up (scripts/devstack up): this case stops "
              "and starts the servers with scripts/devstack")
    st = Stack({"DJOB_SCHEDULER_GRACE_MS": "3000"})
    failed = True
    stopped = set()
    try:
        api, _ = st.api()
        st.worker()
        st.worker()
        attempts = []  # (index, status, body, seconds, t)
        health = []    # (t, status, body)
        stats = []     # (t, status, body, seconds)
        windows = {}   # service: (stopped, answering again), seconds from t0
        done = threading.Event()
        lock = threading.Lock()
        t0 = time.time()
        # About 8 submits a second, so they span both outages.
        def submitter(k, threads):
            for i in range(k, n, threads):
                ts = time.time()
                try:
                    st_, body = request(api, "POST", "/jobs",
                                        {"type": "compute", "payload": {"input": f"out-{i}"}})
                except (OSError, http.client.HTTPException) as e:
                    st_, body = -1, repr(e)
                with lock:
                    attempts.append((i, st_, body, time.time() - ts, ts - t0))
                time.sleep(max(0.0, threads / 8.0 - (time.time() - ts)))

        def poll_health():
            while not done.is_set():
                try:
                    h = request(api, "GET", "/health", timeout=30)
                except (OSError, http.client.HTTPException) as e:
                    h = (-1, repr(e))
                health.append((time.time() - t0,) + h)
                # /stats answers from its last reading, MongoDB down or not.
                ts = time.time()
                try:
                    sc, sb = request(api, "GET", "/stats", timeout=30)
                except (OSError, http.client.HTTPException) as e:
                    sc, sb = -1, repr(e)
                stats.append((ts - t0, sc, sb, time.time() - ts))
                time.sleep(0.5)

        subs = [threading.Thread(target=submitter, args=(k, 4)) for k in range(4)]
        hp = threading.Thread(target=poll_health)
        for t in subs + [hp]:
            t.start()
        try:
            time.sleep(6)
            for svc in ("kafka", "mongo"):
                stopped.add(svc)
                check(devstack("stop", svc) == 0, f"devstack stop {svc} failed")
                t_stop = time.time() - t0
                time.sleep(outage)
                check(devstack("start", svc) == 0, f"devstack start {svc} failed")
                stopped.discard(svc)
                windows[svc] = (t_stop, time.time() - t0)
                say(f"{svc} down from {t_stop:.1f} s to {time.time() - t0:.1f} s")
                time.sleep(8)
        finally:
            for t in subs:
                t.join()
            done.set()
            hp.join()
        check(not st.dead_daemons(), f"daemons died: {st.dead_daemons()}")
        by_status = collections.Counter(a[1] for a in attempts)
        accepted = {a[0]: a[2]["jobId"] for a in attempts if a[1] == 201}
        refused = [a for a in attempts if a[1] != 201]
        for i, s, body, secs, t in refused:
            check(s == 503 and isinstance(body, dict) and body.get("error"),
                  f"submit {i} at {t:.1f} s: {s} {body!r:.200} (expected 201 or 503 with an "
                  "error)")
        check(refused, "no submission was refused while a server was down")
        kafka_down = [h for h in health if h[1] == 503 and isinstance(h[2], dict)
                      and h[2].get("kafka") == "down"]
        mongo_down = [h for h in health if h[1] == 503 and isinstance(h[2], dict)
                      and h[2].get("mongo") == "down"]
        check(kafka_down and mongo_down,
              f"/health never said degraded for both: kafka {len(kafka_down)}, "
              f"mongo {len(mongo_down)}")
        # Once the API has seen a server down (its cached health), a
        # submission is refused at once. Those already under way when the
        # server went away wait out the server timeouts (Kafka's 10 s
        # message timeout; MongoDB's 5 s server selection, for the insert
        # and for the clean-up of what it may have written).
        # The outage is known until /health says that server answers again:
        # a broker that is starting (slow on a loaded machine) accepts
        # connections before it takes messages, and a submission then waits.
        seen = {"kafka": kafka_down[0][0], "mongo": mongo_down[0][0]}
        known = {}
        for s_, t_ in seen.items():
            back = [h[0] for h in health if h[0] > t_ and isinstance(h[2], dict)
                    and h[2].get(s_) == "ok"]
            known[s_] = min(back[0] if back else windows[s_][1], windows[s_][1])
        after = [a for a in refused
                 if any(seen[s] + 0.5 <= a[4] <= known[s] for s in seen)]
        during = [a for a in refused if a not in after]
        slow_after = [a for a in after if a[3] >= 3]
        check(not slow_after, f"{len(slow_after)} submissions refused slowly although the "
              f"outage was known, e.g. {slow_after[:3]}")
        slowest = max(a[3] for a in refused)
        check(slowest < 30, f"a refused submission took {slowest:.1f} s")
        check(health[-1][1] == 200, f"/health at the end: {health[-1]}")
        bad_stats = [x for x in stats if x[1] != 200 or x[3] >= 1]
        check(not bad_stats, f"{len(bad_stats)} GET /stats not answered 200 in under 1 s, e.g. "
              f"{bad_stats[:2]!r:.300}")
        in_mongo_outage = [x for x in stats if windows["mongo"][0] + 2 <= x[0] <= windows["mongo"][1]]
        check(in_mongo_outage and all(x[2]["total"] >= 0 for x in in_mongo_outage),
              f"no /stats figures while MongoDB was down: {in_mongo_outage[:2]!r:.300}")
        docs = st.wait_completed(api, list(accepted.values()), timeout=600)
        for i, jid in accepted.items():
            d = docs[jid]
            check(d["result"]["value"] == sha256(f"out-{i}"), f"bad result {d}")
            check(completed_entries(d) == 1, f"job {jid} history {d['history']}")
        # A refused submission leaves no job behind (the client deletes a
        # job whose publish failed).
        extra = [d for jid, d in docs.items() if jid not in set(accepted.values())]
        check(not extra, f"{len(extra)} jobs stored for refused submissions, e.g. {extra[:2]}")
        per_job = check_runs(st.runs(), docs, list(accepted.values()))
        runs_n = sum(len(r) for r in per_job.values())
        check(not st.dead_daemons(), f"daemons died: {st.dead_daemons()}")
        fast = sum(1 for a in after if a[3] < 1)
        slow_during = max((a[3] for a in during), default=0)
        print(f"counts: {len(attempts)} submits: {by_status[201]} accepted (201), all completed "
              f"once; {len(refused)} refused with 503 and a JSON error: {len(after)} once the "
              f"outage was seen by /health ({fast} in under 1 s, slowest "
              f"{max((a[3] for a in after), default=0):.2f} s), {len(during)} under way or "
              f"before it was seen (slowest {slow_during:.1f} s); 0 jobs left behind by them; "
              f"{runs_n} handler runs, "
              f"0 (job, attempt) run twice; /health degraded "
              f"{len(kafka_down)} times with kafka down, {len(mongo_down)} with mongo down; "
              f"GET /stats answered 200 all {len(stats)} times ({len(in_mongo_outage)} with "
              f"MongoDB down, slowest {max(x[3] for x in stats) * 1000:.0f} ms); "
              f"no daemon exited; {time.time() - t0:.1f} s in all")
        failed = False
    finally:
        for svc in ("kafka", "mongo"):
            if devstack("status", svc) != 0:
                devstack("start", svc)
        st.stop(failed)


def test_two_api_replicas_sweeping_never_run_a_job_attempt_twice():
    n = 200
    st = Stack({"DJOB_SCHEDULER_INTERVAL_MS": "200", "DJOB_SCHEDULER_GRACE_MS": "2000"})
    failed = True
    try:
        api1, _ = st.api(name="djob-api-1")
        api2, _ = st.api(name="djob-api-2")
        st.worker()
        st.worker()
        t0 = time.time()
        half = n // 2
        ids = (submit_many(api1, [{"input": f"r-{i}", "failFirst": 1} for i in range(half)])
               + submit_many(api2, [{"input": f"r-{i}", "failFirst": 1}
                                    for i in range(half, n)]))
        check(len(set(ids)) == n, "not every submit answered 201")
        docs = st.wait_completed(api1, ids, timeout=600)
        elapsed = time.time() - t0
        time.sleep(3)
        runs = st.runs()
        per = collections.Counter((j, a, k) for k, j, p, a in runs)
        dup = {key: c for key, c in per.items() if c > 1}
        check(not dup, f"{len(dup)} (job, attempt) ran more than once, e.g. "
              f"{list(dup.items())[:3]}")
        per_job = check_runs(runs, docs, ids)
        exact = 0
        for i, jid in enumerate(ids):
            d = docs[jid]
            hist = [h["status"] for h in d["history"]]
            # Attempt 1 fails on purpose (or loses its lease on a very slow
            # store); a later attempt completes.
            check(d["attempts"] >= 2, f"job {jid} completed on attempt 1: {d['history']}")
            exact += hist == ["failed", "completed"]
            check(d["result"]["value"] == sha256(f"r-{i}"), f"bad result {d}")
        runs_n = sum(len(r) for r in per_job.values())
        _, msgs = st.counts()
        print(f"counts: {n} jobs failing once, submitted through 2 API replicas whose "
              f"schedulers sweep every 200 ms; all {n} completed, {exact} on attempt 2 with "
              f"history [failed, completed] (the rest after a lease expired on a slow store); "
              f"{runs_n} handler runs = one per (job, attempt), 0 (job, attempt) run twice; "
              f"Kafka messages {msgs}; {elapsed:.1f} s")
        failed = False
    finally:
        st.stop(failed)


def test_status_write_slower_than_the_lease_does_not_run_a_job_again():
    check(os.environ.get("DJOB_FAULT_INJECTION_BUILT") == "1",
          "this build has no fault-injection points: configure it with "
          "meson setup -Dfault_injection=true (scripts/test does)")
    n, lease_ms, delay_ms = 6, 2000, 6000
    st = Stack({"DJOB_LEASE_MS": str(lease_ms), "DJOB_SCHEDULER_INTERVAL_MS": "200"})
    failed = True
    try:
        port, _ = st.api()
        # Every outcome is written 3 leases after the handler returned, as
        # on a store that busy; the worker has free threads to run a job
        # again if its lease ran out meanwhile.
        st.worker(concurrency=n * 2, extra={"DJOB_FAULT": "slow_finish",
                                            "DJOB_FAULT_DELAY_MS": str(delay_ms)})
        t0 = time.time()
        ids = submit_many(port, [{"input": f"slow-{i}"} for i in range(n)])
        docs = st.wait_completed(port, ids, timeout=300)
        elapsed = time.time() - t0
        time.sleep(1)
        runs = [r for r in st.runs() if r[0] == "S"]
        per_job = check_runs(st.runs(), docs, ids)
        for i, jid in enumerate(ids):
            d = docs[jid]
            check(d["attempts"] == 1 and len(per_job[jid]) == 1,
                  f"job {jid} ran {len(per_job[jid])} times, attempts {d['attempts']}: "
                  f"its lease ran out while its outcome was being written: {d['history']}")
            check(d["result"]["value"] == sha256(f"slow-{i}"), f"bad result {d}")
        check(elapsed * 1000 >= delay_ms, f"completed in {elapsed:.1f} s: the delay did not apply")
        print(f"counts: {n} jobs whose outcome was written {delay_ms} ms after the handler "
              f"(lease {lease_ms} ms, scheduler sweeping every 200 ms): {n} completed on "
              f"attempt 1, {len(runs)} handler runs; {elapsed:.1f} s")
        failed = False
    finally:
        st.stop(failed)


def test_writers_racing_on_one_job_through_two_api_replicas_never_both_win():
    """8 claims race on each queued job through two API replicas: one wins.
    Then the winner's completion races a cancel and a completion fenced on
    another worker: at most one wins, and the job shows the winner's."""
    n, racers = 60, 8
    st = Stack({"DJOB_SCHEDULER_INTERVAL_MS": "60000"})
    failed = True
    try:
        apis = [st.api(name="djob-api-1")[0], st.api(name="djob-api-2")[0]]
        # No worker runs: only the racers touch these jobs.
        ids = []
        for i in range(n):
            code, body = request(apis[i % 2], "POST", "/jobs",
                                 {"type": "compute", "payload": {"input": f"race-{i}"}})
            check(code == 201, f"submit: {code} {body!r:.200}")
            ids.append(body["jobId"])

        def race(calls):
            """Run every (port, method, path, body) at once; their statuses."""
            out = [None] * len(calls)
            gate = threading.Barrier(len(calls))

            def one(k):
                port, method, path, body = calls[k]
                gate.wait()
                out[k] = request(port, method, path, body)[0]
            ts = [threading.Thread(target=one, args=(k,)) for k in range(len(calls))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            return out

        completed = cancelled = 0
        for jid in ids:
            codes = race([(apis[k % 2], "PATCH", f"/jobs/{jid}",
                           {"status": "processing", "workerId": f"racer-{k}"})
                          for k in range(racers)])
            winners = [k for k, c in enumerate(codes) if c == 200]
            check(len(winners) == 1 and all(c in (200, 409) for c in codes),
                  f"job {jid}: claims answered {codes}")
            w = winners[0]
            code, doc = request(apis[0], "GET", f"/jobs/{jid}")
            check(doc["status"] == "processing" and doc["workerId"] == f"racer-{w}" and
                  doc["attempts"] == 1, f"job {jid} after the claims: {doc!r:.300}")
            codes = race([
                (apis[w % 2], "PATCH", f"/jobs/{jid}",
                 {"status": "completed", "workerId": f"racer-{w}", "attempts": 1,
                  "result": {"by": w}}),
                (apis[(w + 1) % 2], "DELETE", f"/jobs/{jid}", None),
                (apis[(w + 1) % 2], "PATCH", f"/jobs/{jid}",
                 {"status": "completed", "workerId": f"racer-{(w + 1) % racers}",
                  "attempts": 1, "result": {"by": -1}}),
            ])
            check(codes[2] == 409, f"job {jid}: a completion fenced on another worker "
                  f"answered {codes[2]}")
            check(sorted(codes[:2]) == [200, 409], f"job {jid}: completion and cancel "
                  f"answered {codes[:2]}")
            code, doc = request(apis[1], "GET", f"/jobs/{jid}")
            if codes[0] == 200:
                check(doc["status"] == "completed" and doc["result"] == {"by": w} and
                      len(doc["history"]) == 1, f"job {jid}: the completion won: {doc!r:.300}")
                completed += 1
            else:
                check(doc["status"] == "cancelled" and "result" not in doc,
                      f"job {jid}: the cancel won: {doc!r:.300}")
                cancelled += 1
        print(f"counts: {n} jobs, {racers} claims racing on each through 2 API replicas "
              f"({os.environ.get('DJOB_DEVSTACK_MONGO', 'server unnamed')}): each claimed "
              f"once; then completion vs cancel vs a wrongly fenced completion: {completed} "
              f"completed, {cancelled} cancelled, 0 both, {n} wrong fences refused")
        failed = False
    finally:
        st.stop(failed)


def main():
    fn = globals().get("test_" + CASE)
    if not fn:
        print(f"unknown case {CASE}", file=sys.stderr)
        return 2

    def on_term(sig, frame):
        raise Terminated(f"signal {sig}")

    # meson's timeout sends SIGTERM: the finally blocks still restart the
    # servers and stop the daemons.
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.time()
    try:
        fn()
    except (Failure, Terminated) as e:
        print(f"FAIL {CASE}: {e} ({time.time() - t0:.1f} s)", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"FAIL {CASE}: {e} (is the dev stack up? scripts/devstack up)", file=sys.stderr)
        return 1
    print(f"ok {CASE} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
