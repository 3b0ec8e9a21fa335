#!/usr/bin/env python3
"""The api sink over https:// (tests/e2e/sink_tls_test.py): a worker that
records status with PATCH on djob-api through a TLS-terminating proxy (this
file) whose certificate comes from a throwaway CA made with the openssl CLI.

usage: sink_tls_test.py <case>

The proxy counts TCP connections, completed handshakes and the PATCH request
lines it decrypts, so a case can prove that a refused certificate let no
request (and no token) through, and that PATCHes share connections. Uses the
helpers of e2e_test.py; standard library only.
"""
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_test as e2e  # noqa: E402
from e2e_test import Failure, check  # noqa: E402

CASE = sys.argv[1] if len(sys.argv) > 1 else "?"


def openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    check(out.returncode == 0, f"openssl {' '.join(args)}: {out.stderr.strip()}")


class Pki:
    """Two CAs in a temporary directory: `ca` signs the proxy's
    certificates, `other` signs nothing the proxy shows."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="djob-tls-")
        for ca in ("ca", "other"):
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
                    "-subj", f"/CN=djob test {ca}", "-keyout", f"{ca}.key",
                    "-out", f"{ca}.pem", cwd=self.dir)
        os.mkdir(os.path.join(self.dir, "cadir"))
        with open(os.path.join(self.dir, "ca.pem")) as f, \
                open(os.path.join(self.dir, "cadir", "djob-test.pem"), "w") as g:
            g.write(f.read())

    def path(self, name):
        return os.path.join(self.dir, name)

    def server_cert(self, name, san):
        """A certificate for the proxy, signed by `ca`, with subjectAltName san."""
        with open(self.path(f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
                "-out", f"{name}.pem", cwd=self.dir)
        return self.path(f"{name}.pem"), self.path(f"{name}.key")


class TlsProxy:
    """TLS on `host` (127.0.0.1 or ::1) in front of djob-api's plain port."""

    def __init__(self, cert, key, upstream, host="127.0.0.1"):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.upstream = upstream
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0   # TCP connections accepted
        self.handshakes = 0    # TLS handshakes completed
        self.patches = 0       # PATCH request lines seen in decrypted data
        self.tokens = 0        # Authorization headers seen in decrypted data
        self.failures = []     # handshake errors
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, raw):
        try:
            c = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.failures.append(str(e))
            raw.close()
            return
        with self.lock:
            self.handshakes += 1
        up = socket.create_connection(("127.0.0.1", self.upstream))

        def back():
            try:
                while True:
                    d = up.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
            except OSError:
                pass
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                with self.lock:
                    self.patches += d.count(b"PATCH /jobs/")
                    self.tokens += d.count(b"Authorization: Bearer ")
                up.sendall(d)
        except OSError:
            pass
        for s in (up, c):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.sock.close()


def tls_worker(st, url, ca_file=None, ca_dir=None, concurrency=2):
    port = e2e.free_port()
    argv = [e2e.binary("DJOB_E2E_WORKER"), "--port", str(port), "--sink", "api",
            "--set", f"concurrency={concurrency}"]
    env = {"DJOB_API_URL": url, "DJOB_TOKEN": e2e.WORKER}
    if ca_file:
        env["DJOB_API_TLS_CA_FILE"] = ca_file
    if ca_dir:
        env["DJOB_API_TLS_CA_DIR"] = ca_dir
    p = st.spawn("djob-worker", argv, env)
    st.wait_ready(p, port, "djob-worker")
    return p


def log_text(st, proc):
    for _, p, log in st.procs:
        if p is proc:
            with open(log, errors="replace") as f:
                return f.read()
    return ""


def completes(pki, host_url, listen="127.0.0.1", san="DNS:localhost,IP:127.0.0.1,IP:::1",
              jobs=3, ca_file=None, ca_dir=None):
    """Jobs submitted to the API complete through the sink over TLS; the
    proxy and the API are returned for more checks."""
    st = e2e.Stack()
    failed = True
    proxy = None
    try:
        cert, key = pki.server_cert("server", san)
        api = st.api(tokens=e2e.TOKENS)
        proxy = TlsProxy(cert, key, api, host=listen)
        tls_worker(st, host_url.format(port=proxy.port), ca_file=ca_file, ca_dir=ca_dir)
        ids = [e2e.submit(api, {"input": f"tls-{i}"}, token=e2e.SUBMIT) for i in range(jobs)]
        for i, jid in enumerate(ids):
            doc = e2e.wait_status(api, jid, "completed", token=e2e.SUBMIT, timeout=60)
            check(doc["result"]["value"] == e2e.sha256(f"tls-{i}"), f"result {doc}")
        check(proxy.handshakes >= 1 and proxy.patches >= 2 * jobs,
              f"proxy saw {proxy.handshakes} handshakes, {proxy.patches} PATCHes")
        failed = False
        return proxy
    finally:
        st.stop(failed)
        if proxy:
            proxy.close()


def refused(pki, san, ca_file, want_log, url="https://localhost:{port}"):
    """A worker whose sink must not trust the proxy: no request gets
    through, the job stays queued, and the worker says why."""
    st = e2e.Stack()
    failed = True
    proxy = None
    try:
        cert, key = pki.server_cert("server", san)
        api = st.api(tokens=e2e.TOKENS)
        proxy = TlsProxy(cert, key, api)
        w = tls_worker(st, url.format(port=proxy.port), ca_file=ca_file)
        jid = e2e.submit(api, {"input": "refused"}, token=e2e.SUBMIT)
        deadline = time.time() + 30
        while time.time() < deadline and want_log not in log_text(st, w):
            time.sleep(0.2)
        text = log_text(st, w)
        check(want_log in text, f"no log line with {want_log!r} in the worker's log")
        check('"level":"error"' in next(line for line in text.splitlines() if want_log in line),
              "the refusal is not logged at error level")
        doc = e2e.request(api, "GET", f"/jobs/{jid}", token=e2e.SUBMIT).json()
        check(doc["status"] == "queued" and doc.get("attempts", 0) == 0,
              f"the job moved although the sink refused the API: {doc}")
        check(proxy.connections >= 1, "the worker never tried the proxy")
        check(proxy.patches == 0 and proxy.tokens == 0,
              f"{proxy.patches} PATCHes and {proxy.tokens} tokens went through a refused "
              "certificate")
        failed = False
    finally:
        st.stop(failed)
        if proxy:
            proxy.close()


# ---- cases ----

def test_sink_completes_jobs_over_verified_tls():
    pki = Pki()
    completes(pki, "https://localhost:{port}", ca_file=pki.path("ca.pem"))


def test_sink_trusts_ca_dir():
    pki = Pki()
    completes(pki, "https://localhost:{port}", ca_dir=pki.path("cadir"))


def test_sink_reuses_connections_across_patches():
    pki = Pki()
    jobs = 30
    proxy = completes(pki, "https://localhost:{port}", ca_file=pki.path("ca.pem"), jobs=jobs)
    # Two PATCHes a job (claim, finish) over at most a few connections: the
    # worker's two handler threads and reconnects after an idle close.
    check(proxy.patches >= 2 * jobs, f"{proxy.patches} PATCHes")
    check(proxy.connections <= 8,
          f"{proxy.connections} connections for {proxy.patches} PATCHes: not reused")
    print(f"{proxy.patches} PATCHes over {proxy.connections} connections")


def test_sink_ipv6_literal_url():
    pki = Pki()
    completes(pki, "https://[::1]:{port}/", listen="::1", ca_file=pki.path("ca.pem"))


def test_sink_ipv4_literal_checked_against_ip_san():
    pki = Pki()
    completes(pki, "https://127.0.0.1:{port}", ca_file=pki.path("ca.pem"))


def test_sink_refuses_certificate_of_unknown_ca():
    pki = Pki()
    refused(pki, "DNS:localhost", pki.path("other.pem"), "certificate failed verification")


def test_sink_refuses_wrong_host_name():
    pki = Pki()
    refused(pki, "DNS:wrong.example,IP:10.9.8.7", pki.path("ca.pem"),
            "certificate failed verification")


def test_sink_refuses_ip_literal_not_in_certificate():
    pki = Pki()
    refused(pki, "DNS:localhost,IP:10.9.8.7", pki.path("ca.pem"),
            "certificate failed verification", url="https://127.0.0.1:{port}")


if __name__ == "__main__":
    sys.exit(e2e.main(globals().get("test_" + CASE)))
