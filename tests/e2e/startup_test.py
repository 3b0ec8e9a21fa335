#!/usr/bin/env python3
"""Failing starts of djob-api and djob-worker (tests/e2e/startup_test.py):
each exits non-zero, by itself and not by a signal, within a bound, with one
error line on stderr that names the cause; and a normal start stops cleanly
on SIGTERM.

usage: startup_test.py <case>

A case is one row of CASES: the daemon, its arguments and environment, and
words the error line must hold. DJOB_TEST_WORKER_WRAPPER (e.g. valgrind)
wraps the daemon as in e2e_test.py. Standard library only.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_test as e2e  # noqa: E402
from e2e_test import Failure, check  # noqa: E402

CASE = sys.argv[1] if len(sys.argv) > 1 else "?"
TMP = tempfile.mkdtemp(prefix="djob-startup-")


def tmpfile(name, text, mode=0o644):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def busy_port():
    """A port some other socket listens on (kept open for the case)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy_port.keep.append(s)
    return s.getsockname()[1]


busy_port.keep = []


# name: (daemon, args, env, words the error line holds, exit code or None
# for any non-zero)
def cases():
    p = e2e.free_port
    return {
        # configuration refused before anything starts (exit 2)
        "api_unknown_key": ("api", ["--set", "no.such.key=1"], {}, ["no.such.key"], 2),
        "api_set_without_equals": ("api", ["--set", "api.port"], {}, ["KEY=VALUE"], 2),
        "api_port_not_a_number": ("api", ["--port", "http"], {}, ["api.port"], 2),
        "api_port_out_of_range": ("api", [], {"DJOB_API_PORT": "70000"},
                                  ["DJOB_API_PORT", "api.port"], 2),
        "api_bad_log_level": ("api", [], {"DJOB_LOG_LEVEL": "loud"}, ["log.level"], 2),
        "api_bad_mongo_scheme": ("api", [], {"DJOB_MONGO_URI": "http://127.0.0.1/jobsdb"},
                                 ["mongo.uri"], 2),
        "api_bad_types": ("api", [], {"DJOB_TYPES": "compute,,file"}, ["types"], 2),
        "api_zero_body_limit": ("api", [], {"DJOB_BODY_MAX_BYTES": "0"},
                                ["api.body.max.bytes"], 2),
        "api_bad_http_threads": ("api", [], {"DJOB_HTTP_THREADS": "lots"}, ["http.threads"], 2),
        "api_bad_request_timeout": ("api", ["--set", "http.request.timeout.ms=-5"], {},
                                    ["http.request.timeout.ms"], 2),
        "api_empty_kafka_property": ("api", [], {"DJOB_KAFKA_": "x"}, ["Kafka property"], 2),
        "api_unknown_flag": ("api", ["--frobnicate"], {}, [], 2),
        # refused while starting (exit 1)
        "api_misspelt_kafka_property": ("api", ["--port", str(p())],
                                        {"DJOB_KAFKA_SESSION_TIMEOUT_MSS": "6000"},
                                        ["session.timeout.mss"], 1),
        "api_bad_kafka_property_value": ("api", ["--port", str(p())],
                                         {"DJOB_KAFKA_ACKS": "maybe"}, ["acks"], 1),
        "api_malformed_mongo_uri": ("api", ["--port", str(p())],
                                    {"DJOB_MONGO_URI": "mongodb://bad:uri:x/jobsdb"},
                                    ["MongoDB URI"], 1),
        "api_port_in_use": ("api", ["--port", str(busy_port())], {}, ["Address already in use"],
                            1),
        "api_listen_beyond_loopback_without_tokens": ("api", ["--listen", "0.0.0.0", "--port",
                                                              str(p())], {}, ["api.tokens"], 1),
        "api_listen_on_foreign_address": ("api", ["--listen", "192.0.2.1", "--port", str(p())],
                                          {"DJOB_API_TOKENS": "t:admin"}, ["192.0.2.1"], 1),
        "api_malformed_tokens": ("api", ["--port", str(p())], {"DJOB_API_TOKENS": "justatoken"},
                                 ["api.tokens"], 1),
        "api_token_with_unknown_role": ("api", ["--port", str(p())],
                                        {"DJOB_API_TOKENS": "t:root"}, ["api.tokens"], 1),
        # the worker
        "worker_unknown_key": ("worker", ["--set", "worker.colour=blue"], {}, ["worker.colour"],
                               2),
        "worker_bad_sink": ("worker", ["--sink", "kafka"], {}, ["worker.sink"], 2),
        "worker_zero_concurrency": ("worker", [], {"DJOB_CONCURRENCY": "0"}, ["concurrency"], 2),
        "worker_stray_argument": ("worker", ["extra"], {}, [], 2),
        "worker_missing_plugin": ("worker", ["--port", str(p()), "--plugin",
                                             os.path.join(TMP, "missing.so")],
                                  {}, ["missing.so"], 1),
        "worker_plugin_not_a_shared_object": ("worker", ["--port", str(p()), "--plugin",
                                                         tmpfile("text.so", "not elf\n")],
                                              {}, ["text.so"], 1),
        "worker_plugin_without_entry_point": ("worker", ["--port", str(p()), "--plugin",
                                                         "libm.so.6"],
                                              {}, ["plugin"], 1),
        "worker_misspelt_kafka_property": ("worker", ["--port", str(p())],
                                           {"DJOB_KAFKA_FETCH_WAIT_MAX_MSS": "100"},
                                           ["fetch.wait.max.mss"], 1),
        "worker_malformed_mongo_uri": ("worker", ["--port", str(p())],
                                       {"DJOB_MONGO_URI": "mongodb://:/"}, ["MongoDB URI"], 1),
        "worker_port_in_use": ("worker", ["--port", str(busy_port())], {},
                               ["Address already in use"], 1),
        "worker_api_sink_bad_url": ("worker", ["--port", str(p()), "--sink", "api"],
                                    {"DJOB_API_URL": "ftp://127.0.0.1:3000"}, ["api.url"], 1),
        "worker_api_sink_bad_ipv6_url": ("worker", ["--port", str(p()), "--sink", "api"],
                                         {"DJOB_API_URL": "https://[::1:3000/"}, ["IPv6"], 1),
        "worker_api_sink_token_on_two_lines": ("worker", ["--port", str(p()), "--sink", "api"],
                                               {"DJOB_TOKEN": "a\nb"}, ["token"], 1),
        "worker_api_sink_missing_ca_file": ("worker", ["--port", str(p()), "--sink", "api"],
                                            {"DJOB_API_URL": "https://localhost:1",
                                             "DJOB_API_TLS_CA_FILE": TMP + "/none/ca.pem"},
                                            ["api.tls.ca.file"], 1),
        "worker_api_sink_ca_file_not_pem": ("worker", ["--port", str(p()), "--sink", "api"],
                                            {"DJOB_API_URL": "https://localhost:1",
                                             "DJOB_API_TLS_CA_FILE":
                                                 tmpfile("junk.pem", "no certificate\n")},
                                            ["api.tls.ca.file"], 1),
        "worker_api_sink_empty_ca_dir": ("worker", ["--port", str(p()), "--sink", "api"],
                                         {"DJOB_API_URL": "https://localhost:1",
                                          "DJOB_API_TLS_CA_DIR": TMP + "/none"},
                                         ["api.tls.ca.dir"], 1),
    }


def daemon_path(which):
    return e2e.binary("DJOB_E2E_API" if which == "api" else "DJOB_E2E_WORKER")


def run_failing(which, args, env_extra, words, code):
    st = e2e.Stack()
    env = st.env(env_extra)
    if "DJOB_KAFKA_" in env_extra:
        env["DJOB_KAFKA_"] = env_extra["DJOB_KAFKA_"]
    wrap = os.environ.get("DJOB_TEST_WORKER_WRAPPER", "").split()
    argv = wrap + [daemon_path(which)] + args
    try:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise Failure(f"{argv} still ran after 60 s")
    check(out.returncode > 0, f"exit status {out.returncode} (a signal if negative); "
                              f"stderr: {out.stderr[-800:]}")
    if code is not None:
        check(out.returncode == code, f"exit {out.returncode}, wanted {code}: {out.stderr[-800:]}")
    component = "djob-api" if which == "api" else "djob-worker"
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    if not lines and code == 2 and not words:
        check("usage:" in out.stdout + out.stderr, "no usage text")
        return
    if code == 2 and not words:
        check(any(line.startswith("usage:") for line in lines), f"no usage text: {lines}")
        return
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            # valgrind's and the sanitizers' reports are not ours to format
            if (not line.startswith(("==", "--")) and "Sanitizer" not in line
                    and not e2e.libmongoc_load_line(line)):
                raise Failure(f"stderr line is not JSON: {line!r}")
    ours = [r for r in records if r.get("component") == component and r.get("level") == "error"]
    check(len(ours) == 1, f"{len(ours)} error lines from {component}: {lines}")
    msg = ours[0]["msg"]
    check(records[-1] is ours[0], f"the error is not the last line: {lines}")
    check("\n" not in msg and msg[:1].isupper() and len(msg) < 400, f"not one sentence: {msg!r}")
    for w in words:
        check(w.lower() in msg.lower(), f"the error line does not name {w!r}: {msg!r}")
    print(f"exit {out.returncode}: {msg}")


def test_clean_start_and_sigterm_stop():
    """Both daemons start, serve /health and exit 0 on SIGTERM."""
    st = e2e.Stack()
    failed = True
    try:
        api = st.api()
        st.worker(api_port=api)
        failed = False
    finally:
        st.stop(failed)


def occupy_mongoc_shm():
    """Leave /dev/shm/mongoc-PID behind as a predecessor with this PID that
    died by SIGKILL does: libmongoc cannot create its counters there."""
    fd = os.open(f"/dev/shm/mongoc-{os.getpid()}", os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def test_daemons_run_with_libmongoc_counters_taken():
    """A killed predecessor's /dev/shm/mongoc-PID (CI's failure of
    2026-12-04): both daemons start, serve and stop; libmongoc's one
    load-time line is the only line that is not djob's JSON."""
    st = e2e.Stack()
    st.preexec = occupy_mongoc_shm
    failed = True
    try:
        api = st.api()
        st.worker(api_port=api)
        r = e2e.request(api, "POST", "/jobs", {"type": "compute", "payload": {"input": "shm"}})
        check(r.status == 201, f"POST /jobs: {r}")
        e2e.wait_status(api, r.json()["jobId"], "completed")
        failed = False
    finally:
        pids = [p.pid for _, p, _ in st.procs]
        try:
            st.stop(failed)  # every other log line is JSON, or it fails
        finally:
            for pid in pids:
                try:
                    os.unlink(f"/dev/shm/mongoc-{pid}")
                except FileNotFoundError:
                    pass
    for name, _, log in st.procs:
        with open(log) as f:
            first = f.readline()
        check(e2e.libmongoc_load_line(first),
              f"{name}: libmongoc did not find its counters taken: {first!r}")
    print(f"{len(st.procs)} daemons ran with their counters' segment taken; 1 job completed")


def main():
    t0 = time.time()
    try:
        fn = globals().get("test_" + CASE)
        if fn:
            fn()
        else:
            table = cases()
            if CASE not in table:
                print(f"unknown case {CASE}", file=sys.stderr)
                return 2
            run_failing(*table[CASE])
    except Failure as e:
        print(f"FAIL {CASE}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"FAIL {CASE}: {e}", file=sys.stderr)
        return 1
    print(f"ok {CASE} ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    if CASE == "--list":
        print("\n".join(["clean_start_and_sigterm_stop"] + list(cases())))
        sys.exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(main())
