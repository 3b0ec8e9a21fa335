#!/usr/bin/env python3
"""The dashboard in a browser: djob-api (with tokens, and one without) and
djob-worker started here on the live dev stack, as tests/e2e starts them
(its Stack is reused), then dashboard_test.mjs drives Debian's headless
chromium through playwright-core against them.

usage: browser_test.py <case>

The daemons' paths come from the e2e variables (DJOB_E2E_API,
DJOB_E2E_WORKER, DJOB_E2E_COUNT, DJOB_E2E_PLUGIN). DJOB_BROWSER_PORTS
("49100-49199") makes the daemons listen on ports of that range instead
of ones the system picks. A case fails, never skips, when node,
playwright-core (scripts/install runs npm ci here), chromium or the stack
is missing. DJOB_SCREENSHOTS=1 writes docs/dashboard.png and
docs/dashboard-job.png (the first case).
"""
import json
import os
import shutil
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import e2e_test  # noqa: E402
from e2e_test import ADMIN, SUBMIT, TOKENS, WORKER, Failure, Stack, check  # noqa: E402

CASE = sys.argv[1] if len(sys.argv) > 1 else "?"
CASES = ["submitted_jobs_are_listed_opened_and_counted",
         "failed_job_retried_from_the_ui_is_requeued",
         "filters_paging_and_search_by_id",
         "submit_and_worker_tokens_see_no_retry_or_cancel",
         "token_form_on_401_wrong_token_and_sign_out",
         "api_errors_are_shown_as_their_sentence"]


def range_port():
    """A free port of DJOB_BROWSER_PORTS (lo-hi), or one the system picks."""
    spec = os.environ.get("DJOB_BROWSER_PORTS", "")
    if not spec:
        return system_port()
    lo, _, hi = spec.partition("-")
    for port in range(int(lo), int(hi or lo) + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise Failure(f"no free port in DJOB_BROWSER_PORTS={spec}")


system_port = e2e_test.free_port
e2e_test.free_port = range_port


def tools():
    """node and playwright-core, or a Failure saying what is missing."""
    node = shutil.which("node")
    check(node, "node is not installed (scripts/install installs it)")
    check(os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")),
          "playwright-core is not installed in tests/browser (scripts/install runs npm ci there)")
    check(os.access("/usr/bin/chromium", os.X_OK),
          "/usr/bin/chromium is missing (scripts/install installs Debian's chromium)")
    return node


def run_case():
    node = tools()
    st = Stack()
    failed = True
    try:
        api = st.api(tokens=TOKENS)
        open_api = st.api() if CASE == "token_form_on_401_wrong_token_and_sign_out" else None
        wport = st.worker(api_port=api, tokens=TOKENS)
        env = dict(os.environ)
        env.update({
            "DJOB_BROWSER_API": f"http://127.0.0.1:{api}",
            "DJOB_BROWSER_WORKER": f"http://127.0.0.1:{wport}",
            "DJOB_BROWSER_TOKENS": json.dumps({"submit": SUBMIT, "worker": WORKER,
                                               "admin": ADMIN}),
            "DJOB_SCREENSHOTS_DIR": os.path.join(HERE, "..", "..", "docs"),
        })
        if open_api:
            env["DJOB_BROWSER_OPEN_API"] = f"http://127.0.0.1:{open_api}"
        p = subprocess.run([node, os.path.join(HERE, "dashboard_test.mjs"), CASE], env=env,
                           cwd=HERE, capture_output=True, text=True, timeout=240)
        sys.stdout.write(p.stdout)
        if p.returncode != 0:
            lines = (p.stderr.strip() or f"node exited with {p.returncode}").splitlines()
            raise Failure("\n".join(lines[-20:]).removeprefix(f"FAIL {CASE}: "))
        failed = False
    finally:
        st.stop(failed)


if __name__ == "__main__":
    sys.exit(e2e_test.main(run_case if CASE in CASES else None))
