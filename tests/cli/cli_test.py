#!/usr/bin/env python3
"""The djob command line (tools/djob) against djob-api and djob-worker
started here on the live dev stack, as tests/e2e does (its Stack is reused).

usage: cli_test.py <case>

DJOB_CLI names the djob binary; the daemons' paths come from the e2e
variables (DJOB_E2E_API, DJOB_E2E_WORKER, DJOB_E2E_COUNT, DJOB_E2E_PLUGIN).
A case fails, never skips, when the stack or a binary is missing. Standard
library only.
"""
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from e2e_test import main as e2e_main  # noqa: E402
from e2e_test import (ADMIN, SUBMIT, TOKENS, WORKER, Failure, Stack, binary,  # noqa: E402
                      check, request, sha256, wait_status)

CASE = sys.argv[1] if len(sys.argv) > 1 else "?"
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class Run:
    def __init__(self, p):
        self.code = p.returncode
        self.out = p.stdout
        self.err = p.stderr

    def __repr__(self):
        return f"exit {self.code}, stdout {self.out[:400]!r}, stderr {self.err[:400]!r}"


def djob(*args, api=None, token=None, stdin=None, env=None):
    """Run djob with --url for `api` (a port) and --token; the environment
    holds neither DJOB_API_URL nor DJOB_TOKEN unless `env` sets them."""
    e = {k: v for k, v in os.environ.items() if k not in ("DJOB_API_URL", "DJOB_TOKEN")}
    e.update(env or {})
    argv = [binary("DJOB_CLI")]
    if api is not None:
        argv += ["--url", f"http://127.0.0.1:{api}"]
    if token:
        argv += ["--token", token]
    p = subprocess.run(argv + list(args), input=stdin, capture_output=True, text=True,
                       timeout=120, env=e)
    return Run(p)


def ok(r, what):
    check(r.code == 0, f"{what}: {r}")
    check(r.err == "", f"{what}: something on stderr: {r}")
    return r.out


def refused(r, code, what, text=None):
    """Non-zero exit `code`, nothing on stdout, one sentence on stderr."""
    check(r.code == code, f"{what}: expected exit {code}: {r}")
    check(r.out == "", f"{what}: stdout not empty: {r}")
    lines = r.err.splitlines()
    check(len(lines) == 1 and lines[0].startswith("djob: "), f"{what}: stderr {r.err!r}")
    if text:
        check(text in lines[0], f"{what}: {text!r} not in {lines[0]!r}")
    return lines[0]


def stats_settle(api, want, token=None, timeout=30):
    """GET /stats until its counts equal `want` (a function of the answer
    returning None when it matches, or what differs)."""
    deadline = time.time() + timeout
    why = None
    while time.time() < deadline:
        r = request(api, "GET", "/stats", token=token)
        check(r.status == 200, f"GET /stats: {r}")
        why = want(r.json())
        if why is None:
            return r.json()
        time.sleep(0.2)
    raise Failure(f"/stats did not settle within {timeout} s: {why}")


def run_case(fn):
    st = Stack()
    failed = True
    try:
        fn(st)
        failed = False
    finally:
        st.stop(failed)


# ---- cases ----

def test_submit_get_list_wait_and_stats(st):
    api = st.api()
    st.worker()
    payload_file = os.path.join(st.dir, "payload.json")
    with open(payload_file, "w") as f:
        json.dump({"input": "from a file"}, f)

    # submit: from an argument, a file and standard input; one id a line.
    ids = {}
    for what, args, stdin, text in (("argument", ['{"input":"arg"}'], None, "arg"),
                                    ("@file", ["@" + payload_file], None, "from a file"),
                                    ("stdin", ["-"], '{"input":"stdin"}', "stdin")):
        out = ok(djob("submit", "compute", *args, api=api, stdin=stdin), f"submit {what}")
        check(ID.fullmatch(out.strip()), f"submit {what}: not one id: {out!r}")
        ids[out.strip()] = text
    # --jsonl: 5 jobs (a blank line between) in batches of 2, ids in order.
    lines = [json.dumps({"type": "compute", "payload": {"input": f"line{i}"}}) for i in range(5)]
    out = ok(djob("submit", "--jsonl", "-", "--batch", "2", api=api,
                  stdin="\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n"),
             "submit --jsonl")
    jsonl_ids = out.split()
    check(len(jsonl_ids) == 5 and all(ID.fullmatch(i) for i in jsonl_ids),
          f"--jsonl ids {out!r}")
    for i, jid in enumerate(jsonl_ids):
        ids[jid] = f"line{i}"
    # A job that fails: no attempt left after its first.
    out = ok(djob("submit", "compute", '{"input":"bad","failFirst":5}', "--max-attempts", "1",
                  api=api), "submit failing job")
    bad = out.strip()

    # wait: every job completed -> exit 0, one line per job.
    out = ok(djob("wait", *ids, "--timeout", "120", api=api), "wait")
    check(sorted(out.splitlines()) == sorted(f"{i} completed" for i in ids), f"wait: {out!r}")
    for jid, text in ids.items():
        doc = json.loads(ok(djob("get", jid, api=api), "get"))
        check(doc["status"] == "completed" and doc["result"]["value"] == sha256(text),
              f"get {jid}: {doc}")
    # A failed job among them: exit 3, its error on its line.
    r = djob("wait", bad, list(ids)[0], "--timeout", "120", api=api)
    check(r.code == 3, f"wait with a failed job: {r}")
    check(f"{bad} failed: Failing on purpose" in r.out.splitlines(), f"wait failed: {r}")

    # wait on a terminal: a progress bar.
    mfd, sfd = pty.openpty()
    p = subprocess.Popen([binary("DJOB_CLI"), "--url", f"http://127.0.0.1:{api}", "wait",
                          *list(ids)[:3]], stdout=sfd, stderr=sfd)
    os.close(sfd)
    tty = b""
    while True:
        ready, _, _ = select.select([mfd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(mfd, 4096)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    os.close(mfd)
    check(p.wait(timeout=60) == 0, f"wait on a terminal exited {p.returncode}: {tty!r}")
    check(b"[" + b"#" * 30 + b"] 3/3" in tty, f"no full progress bar on the terminal: {tty!r}")

    # list: a table with every job; --json the API's page; filters; pages.
    out = ok(djob("list", api=api), "list")
    rows = out.splitlines()
    check(rows[0].split() == ["ID", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "(UTC)"],
          f"list header {rows[0]!r}")
    check(len(rows) == 1 + len(ids) + 1, f"list rows {rows}")
    type_at = rows[0].index("TYPE")
    check(all(r[type_at - 2:type_at] == "  " and r[type_at] != " " for r in rows),
          f"columns not aligned: {rows}")
    row = [r for r in rows if r.startswith(bad)]
    check(len(row) == 1 and row[0].split()[1:4] == ["compute", "failed", "1"], f"row {row}")
    page = json.loads(ok(djob("list", "--json", "--status", "failed", api=api), "list --json"))
    check([j["_id"] for j in page["jobs"]] == [bad] and page["next"] is None, f"page {page}")
    seen, cursor = [], None
    while True:
        args = ["list", "--limit", "3"] + (["--cursor", cursor] if cursor else [])
        r = djob(*args, api=api)
        check(r.code == 0, f"list page: {r}")
        seen += [line.split()[0] for line in r.out.splitlines()[1:]]
        m = re.fullmatch(r"More jobs: djob list --cursor (\S+)\n", r.err)
        if not m:
            check(r.err == "", f"list last page: {r}")
            break
        cursor = m.group(1)
    check(sorted(seen) == sorted(list(ids) + [bad]), f"pages gave {seen}")

    # stats: exact counts once the jobs are settled, by status and type.
    n = len(ids)

    def want(s):
        got = (s["total"], s["byStatus"]["completed"], s["byStatus"]["failed"],
               s["byType"].get("compute", {}).get("total"))
        return None if got == (n + 1, n, 1, n + 1) else f"total/completed/failed/compute {got}"

    s = stats_settle(api, want)
    check(set(s["byStatus"]) == {"queued", "scheduled", "processing", "completed", "failed",
                                 "cancelled"}, f"byStatus {s['byStatus']}")
    tp = s["throughput"]
    check(len(tp["perMinute"]["completed"]) == 60 and len(tp["perSecond"]["failed"]) == 60,
          f"series lengths {tp}")
    check(sum(tp["perMinute"]["completed"]) == n and sum(tp["perMinute"]["failed"]) == 1,
          f"per minute {tp['perMinute']}")
    check(sum(tp["perSecond"]["completed"]) <= n, f"per second {tp['perSecond']}")
    cli = json.loads(ok(djob("stats", "--json", api=api), "stats --json"))
    check(cli["byStatus"] == s["byStatus"] and cli["total"] == n + 1, f"stats --json {cli}")
    table = ok(djob("stats", api=api), "stats").splitlines()
    check(table[0].split() == ["TYPE", "TOTAL", "queued", "scheduled", "processing",
                               "completed", "failed", "cancelled"], f"stats header {table}")
    check(table[1].split() == ["compute", str(n + 1), "0", "0", "0", str(n), "1", "0"],
          f"stats compute row {table}")
    check(table[2].split() == ["all", str(n + 1), "0", "0", "0", str(n), "1", "0"],
          f"stats all row {table}")
    hour = [line for line in table if line.startswith("completed")]
    check(hour and hour[0].split()[2] == str(n), f"stats last hour {table}")

    # health
    check(ok(djob("health", api=api), "health") == "ok (kafka ok, mongo ok)\n", "health text")
    check(json.loads(ok(djob("health", "--json", api=api), "health --json")) ==
          {"status": "ok", "kafka": "ok", "mongo": "ok"}, "health --json")


def test_cancel_retry_watch_and_worker_control(st):
    api = st.api(tokens=TOKENS)
    wport = st.worker(stopped=True)
    wurl = ["--worker-url", f"http://127.0.0.1:{wport}"]
    status = json.loads(ok(djob("worker", "status", *wurl), "worker status"))
    check(status["consumer"] == "stopped", f"worker status {status}")

    jid = ok(djob("submit", "compute", '{"input":"watched"}', api=api, token=SUBMIT),
             "submit").strip()
    # watch, in the background: the job as it is, then each change.
    watch = subprocess.Popen([binary("DJOB_CLI"), "watch", "--interval", "0.2", "--type",
                              "compute"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ, DJOB_API_URL=f"http://127.0.0.1:{api}",
                                                 DJOB_TOKEN=SUBMIT))
    lines = []

    def expect_line(pattern, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            ready, _, _ = select.select([watch.stdout], [], [], 1)
            if ready:
                line = watch.stdout.readline()
                check(line, f"watch ended: {watch.stderr.read() if watch.poll() is not None else ''}")
                lines.append(line.rstrip("\n"))
                if re.fullmatch(r"\d\d:\d\d:\d\d " + pattern, lines[-1]):
                    return
        raise Failure(f"watch never printed {pattern!r}; printed {lines}")

    try:
        expect_line(f"{jid} compute queued")
        # cancel needs an admin token: 403 with a submit token.
        refused(djob("cancel", jid, api=api, token=SUBMIT), 1, "cancel as submit", "(HTTP 403)")
        out = ok(djob("cancel", jid, api=api, token=ADMIN), "cancel")
        check(out == f"{jid} cancelled\n", f"cancel: {out!r}")
        expect_line(f"{jid} compute queued -> cancelled")
        refused(djob("cancel", jid, api=api, token=ADMIN), 1, "cancel twice", "(HTTP 409)")
        r = djob("wait", jid, "--timeout", "5", api=api, token=SUBMIT)
        check(r.code == 3 and r.out == f"{jid} cancelled\n", f"wait cancelled: {r}")
        out = ok(djob("retry", jid, api=api, token=ADMIN), "retry")
        check(out == f"{jid} queued\n", f"retry: {out!r}")
        expect_line(f"{jid} compute cancelled -> queued")

        # The worker started from the command line runs it.
        check(ok(djob("worker", "start", *wurl, token=ADMIN), "worker start") ==
              "consumer started\n", "worker start")
        expect_line(rf"{jid} compute (queued|processing) -> completed")
        out = ok(djob("wait", jid, "--timeout", "60", api=api, token=SUBMIT), "wait")
        check(out == f"{jid} completed\n", f"wait: {out!r}")
        check(ok(djob("worker", "stop", *wurl, token=ADMIN), "worker stop") ==
              "consumer stopped\n", "worker stop")
        status = json.loads(ok(djob("worker", "status", "--json", *wurl), "worker status"))
        check(status["consumer"] == "stopped", f"worker status {status}")
        check(watch.poll() is None, f"watch exited {watch.returncode}")
        watch.terminate()
        check(watch.wait(timeout=30) == 0, f"watch exited {watch.returncode} on SIGTERM")
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(timeout=30)
        watch.stdout.close()
        watch.stderr.close()


def test_workers_table_and_json(st):
    api = st.api(tokens=TOKENS)
    wid = st.group + "-cli"
    wport = st.worker(worker_id=wid)
    compute = st.prefix + "compute"
    refused(djob("workers", api=api), 1, "workers without a token", "(HTTP 401)")
    refused(djob("workers", "extra", api=api, token=SUBMIT), 2, "workers with an argument")

    def settle(want, timeout=60):
        deadline = time.time() + timeout
        while True:
            j = json.loads(ok(djob("workers", "--json", api=api, token=SUBMIT), "workers --json"))
            if want(j) or time.time() > deadline:
                return j
            time.sleep(0.2)

    jobs = [ok(djob("submit", "compute", json.dumps({"input": f"c{i}"}), api=api, token=SUBMIT),
               "submit").strip() for i in range(4)]
    ok(djob("wait", *jobs, "--timeout", "60", api=api, token=SUBMIT), "wait")
    j = settle(lambda j: j["state"] == "Stable" and j["lag"]["total"] == 0 and
               sum(p["end"] for w in j["workers"] for p in w["partitions"]) == 4)
    check([w["id"] for w in j["workers"]] == [wid] and len(j["workers"][0]["partitions"]) == 3,
          f"workers --json {j}")
    check(set(j) == {"asOf", "group", "state", "workers", "unassigned", "lag"}, f"keys {j}")

    table = ok(djob("workers", api=api, token=SUBMIT), "workers").splitlines()
    check(table[0].split() == ["WORKER", "HOST", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"],
          f"workers header {table}")
    rows = [line.split() for line in table[1:] if line.startswith(wid)]
    check(sorted(int(r[3]) for r in rows) == [0, 1, 2] and all(r[2] == compute for r in rows),
          f"worker rows {table}")
    byp = {p["partition"]: p for p in j["workers"][0]["partitions"]}
    for r in rows:
        p = byp[int(r[3])]
        check([int(x) for x in r[4:7]] == [p["committed"], p["end"], p["lag"]], f"row {r} {p}")
    check(f"group {st.group} (Stable): 1 worker, lag 0" in table, f"workers totals {table}")

    # Stopped: no member, the new jobs are lag on unassigned partitions.
    check(request(wport, "POST", "/stop").status == 200, "POST /stop")
    settle(lambda j: j["state"] == "Empty")
    for i in range(3):
        ok(djob("submit", "compute", json.dumps({"input": f"l{i}"}), api=api, token=SUBMIT),
           "submit")
    settle(lambda j: j["lag"]["total"] == 3, timeout=20)
    table = ok(djob("workers", api=api, token=SUBMIT), "workers").splitlines()
    un = [line.split() for line in table[1:] if line.startswith("(unassigned)")]
    check(sum(int(r[-1]) for r in un if r[2] == compute) == 3, f"unassigned rows {table}")
    check(f"group {st.group} (Empty): 0 workers, lag 3" in table, f"workers totals {table}")
    check(any(line.split() == [compute, "3"] for line in table), f"lag by topic {table}")


def test_bad_input_bad_url_and_wrong_token(st):
    api = st.api(tokens=TOKENS)

    def stored():
        r = request(api, "GET", "/jobs", token=ADMIN)
        check(r.status == 200, f"GET /jobs: {r}")
        return r.json()["jobs"]

    # Tokens: none 401, wrong 401, wrong role 403; DJOB_TOKEN is read.
    refused(djob("list", api=api), 1, "no token", "(HTTP 401)")
    refused(djob("list", api=api, token="nope"), 1, "wrong token", "(HTTP 401)")
    refused(djob("submit", "compute", api=api, token=WORKER), 1, "worker submits", "(HTTP 403)")
    ok(djob("list", env={"DJOB_API_URL": f"http://127.0.0.1:{api}", "DJOB_TOKEN": SUBMIT}),
       "list with DJOB_API_URL and DJOB_TOKEN")

    # Bad URLs: 2 for a malformed one, 1 for one that does not answer.
    for url in ("ftp://127.0.0.1:3000", "http://", "http://127.0.0.1:99999", "127.0.0.1:3000",
                "http://127.0.0.1:3000x"):
        refused(djob("--url", url, "health"), 2, f"--url {url}")
    r = djob("--url", "http://127.0.0.1:1", "health")
    refused(r, 1, "unreachable URL", "Cannot reach 127.0.0.1:1")
    refused(djob("health", env={"DJOB_API_URL": "http://127.0.0.1:1"}), 1, "DJOB_API_URL")

    # Bad command lines: 2, nothing sent.
    for args in (["frobnicate"], ["list", "--bogus"], ["list", "--limit", "0"],
                 ["list", "--limit"], ["submit"], ["get"], ["get", "a", "b"],
                 ["wait"], ["wait", "x", "--timeout", "-1"], ["worker", "restart"],
                 ["submit", "compute", "{}", "--max-attempts", "x"],
                 ["submit", "--jsonl", "-", "compute"], ["watch", "--interval", "0"],
                 ["health", "--json=1"], []):
        r = djob(*args, api=api, token=SUBMIT)
        check(r.code == 2 and r.out == "" and r.err.startswith("djob: "), f"{args}: {r}")
        check(len(r.err.splitlines()) == 1, f"{args}: stderr {r.err!r}")

    # Bad input: 1, one sentence, nothing stored.
    refused(djob("submit", "compute", "{not json", api=api, token=SUBMIT), 1, "bad JSON",
            "not JSON")
    refused(djob("submit", "compute", "[1]", api=api, token=SUBMIT), 1, "array payload",
            "(HTTP 400)")
    refused(djob("submit", "no such type!", api=api, token=SUBMIT), 1, "bad type", "(HTTP 400)")
    refused(djob("submit", "compute", "@/nonexistent/file", api=api, token=SUBMIT), 1,
            "missing file", "Cannot read /nonexistent/file")
    refused(djob("submit", "--jsonl", "-", api=api, token=SUBMIT, stdin='{"type":"compute"}\n[\n'),
            1, "bad jsonl line", "Line 2 of - is not a JSON object")
    r = djob("submit", "--jsonl", "-", api=api, token=SUBMIT,
             stdin='{"type":"compute","payload":{}}\n{"type":"nope","payload":{}}\n')
    check(r.code == 1 and r.out == "" and "lines 1-2 were not submitted" in r.err
          and "(HTTP 400)" in r.err, f"refused batch: {r}")
    refused(djob("submit", "--jsonl", "-", api=api, token=SUBMIT, stdin="\n"), 1, "empty jsonl",
            "holds no job")
    check(stored() == [], f"bad input stored jobs: {stored()}")

    # Unknown and malformed ids.
    refused(djob("get", "00000000-0000-4000-8000-000000000000", api=api, token=SUBMIT), 1,
            "unknown id", "Job not found (HTTP 404)")
    refused(djob("get", "../health x", api=api, token=SUBMIT), 1, "malformed id", "(HTTP 4")
    refused(djob("retry", "00000000-0000-4000-8000-000000000000", api=api, token=ADMIN), 1,
            "retry unknown", "(HTTP 404)")

    # wait: the timeout first -> 4, the job named on stdout.
    jid = ok(djob("submit", "compute", api=api, token=SUBMIT), "submit").strip()
    r = djob("wait", jid, "--timeout", "0.5", api=api, token=SUBMIT)
    check(r.code == 4 and r.out == f"{jid} not finished\n" and
          r.err == "djob: 1 of 1 jobs did not finish within 0.5 s\n", f"wait timeout: {r}")
    refused(djob("wait", jid, "00000000-0000-4000-8000-000000000000", api=api, token=SUBMIT), 1,
            "wait unknown", "Job not found")

    # --help for every command: stdout, exit 0.
    for cmd in ("submit", "get", "list", "wait", "watch", "cancel", "retry", "health", "stats",
                "workers", "worker"):
        for args in ([cmd, "--help"], ["help", cmd]):
            out = ok(djob(*args), " ".join(args))
            check(out.startswith(f"usage: djob {cmd}") and "--url URL" in out, f"{args}: {out!r}")
    out = ok(djob("--help"), "--help")
    check(all(f"djob {c}" in out for c in ("submit", "watch", "worker")), f"--help {out!r}")


if __name__ == "__main__":
    fn = globals().get("test_" + CASE)
    sys.exit(e2e_main(fn and (lambda: run_case(fn))))
