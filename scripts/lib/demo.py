#!/usr/bin/env python3
"""The djob demo proper: start djob-api and a djob-worker, submit one job of
each type, crash the worker in the middle of a job (the prototype's
simulateCrash scenario), start another worker, and print every status
change until every job is finished. Standard library only.

usage: demo.py BUILD_DIR
Reads DJOB_KAFKA_BROKERS and DJOB_MONGO_URI from the environment.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

LEASE_MS = 4000
T0 = time.monotonic()


def say(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_health(port, name, proc, log):
    for _ in range(150):
        if proc.poll() is not None:
            sys.exit(f"{name} exited at start; its log ({log}):\n" + open(log).read()[-2000:])
        try:
            if http(port, "GET", "/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{name} did not answer /health on port {port}")


def main():
    build = os.path.abspath(sys.argv[1])
    logs = tempfile.mkdtemp(prefix="djob-demo-")
    root = os.path.join(logs, "files")
    os.mkdir(root)
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write("hello from the djob demo\nsecond line\n")
    plugins = [os.path.join(build, "examples", f"djob-handler-{t}.so")
               for t in ("file", "blockchain", "data")]
    env = dict(os.environ, DJOB_LEASE_MS=str(LEASE_MS), DJOB_FILE_ROOT=root,
               DJOB_LOG_LEVEL="warning")
    procs = []

    def spawn(name, argv):
        log = os.path.join(logs, f"{name}.log")
        p = subprocess.Popen(argv, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p, log

    api_port = free_port()
    api, log = spawn("djob-api", [os.path.join(build, "daemons", "djob-api"), "--port",
                                  str(api_port)])
    wait_health(api_port, "djob-api", api, log)
    say(f"djob-api on 127.0.0.1:{api_port} (with the scheduler); logs in {logs}")

    def start_worker(n):
        port = free_port()
        argv = [os.path.join(build, "daemons", "djob-worker"), "--port", str(port)]
        for p in plugins:
            argv += ["--plugin", p]
        w, wlog = spawn(f"djob-worker-{n}", argv)
        wait_health(port, f"djob-worker {n}", w, wlog)
        say(f"djob-worker {n} (pid {w.pid}) on 127.0.0.1:{port}: compute, file, blockchain, data")
        return w

    try:
        worker = start_worker(1)
        jobs = [
            # About 14 million hashes: a few seconds, long enough to crash in.
            ("blockchain", {"data": "simulated crash 1", "difficulty": 22}),
            ("compute", {"input": "hello"}),
            ("file", {"path": "hello.txt"}),
            ("blockchain", {"transactions": ["alice->bob 5", "bob->carol 2", "carol->dan 1"]}),
            ("data", {"values": [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]}),
        ]
        ids = []
        for type_, payload in jobs:
            code, body = http(api_port, "POST", "/jobs", {"type": type_, "payload": payload})
            if code != 201:
                sys.exit(f"POST /jobs answered {code}: {body}")
            ids.append(body["jobId"])
            say(f"submitted {type_:10} job {body['jobId']}")
        crash_id = ids[0]
        names = {i: f"{t:10} {i[:8]}" for i, (t, _) in zip(ids, jobs)}
        seen, docs = {}, {}
        crashed = restarted = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for i in ids:
                code, doc = http(api_port, "GET", f"/jobs/{i}")
                if code != 200:
                    continue
                docs[i] = doc
                state = (doc["status"], doc.get("attempts"))
                if seen.get(i) != state:
                    extra = f" (attempt {doc.get('attempts')}, worker {doc.get('workerId', '-')})"
                    say(f"{names[i]}: {seen.get(i, ('new',))[0]:10} -> {doc['status']}"
                        + (extra if doc["status"] == "processing" else ""))
                    seen[i] = state
            if not crashed and seen.get(crash_id, ("",))[0] == "processing":
                time.sleep(0.5)
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                crashed, crash_at = True, time.monotonic()
                say(f"simulateCrash: djob-worker 1 killed with SIGKILL in the middle of "
                    f"{names[crash_id]}; its lease runs out in {LEASE_MS / 1000:.0f} s")
            if crashed and not restarted and time.monotonic() - crash_at > 1:
                worker = start_worker(2)
                restarted = True
            if all(docs.get(i, {}).get("status") in ("completed", "failed", "cancelled")
                   for i in ids):
                break
            time.sleep(0.1)
        print()
        ok = True
        for i in ids:
            d = docs.get(i, {})
            ok &= d.get("status") == "completed"
            print(f"  {names[i]}  {d.get('status', '?'):9}  attempts {d.get('attempts')}  "
                  f"result {json.dumps(d.get('result', d.get('error')))[:90]}")
        print()
        if not ok:
            sys.exit("not every job completed (logs in " + logs + ")")
        say("every job completed, the crashed one on its second attempt by the new worker")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
