"""pip install ./bindings/python into a fresh venv, then a Python worker and
client in that venv complete a compute job on the dev stack.

Run by meson (suite pip) as: python3 pip_install_job.py ROOT. Nothing of the
build tree is used: no DJOB_LIBRARY_PATH and no PYTHONPATH reach the venv,
so `import djob` must find the libdjob.so the wheel put beside it. pip
fetches the build backend (meson-python and meson, pinned in
bindings/python/pyproject.toml) into its isolated build environment. Fails,
never skips, when the dev stack, venv, pip or a build dependency is missing.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

# Runs inside the venv, from a directory away from the source tree.
JOB_SCRIPT = r'''
import hashlib
import os
import sysconfig
import uuid

import djob

platlib = os.path.realpath(sysconfig.get_paths()["platlib"])
package = os.path.realpath(os.path.dirname(djob.__file__))
assert package == os.path.join(platlib, "djob"), f"djob imported from {package}, not the venv"
assert os.path.realpath(djob.library_path) == os.path.join(package, "libdjob.so"), \
    f"libdjob loaded from {djob.library_path}, not the wheel's copy"
assert os.path.exists(os.path.join(package, "py.typed")), "py.typed missing from the wheel"
assert djob.library_version() == djob.__version__

tag = uuid.uuid4().hex[:12]
config = {
    "topic.prefix": f"pip{tag}.",
    "group.id": f"pipg{tag}",
    "mongo.collection": f"pipjobs_{tag}",
    "kafka.session.timeout.ms": "6000",
}
handled = []
worker = djob.Worker(config)


@worker.handler("compute")
def compute(job):
    handled.append(job.id)
    return {"message": "Success", "by": "python",
            "value": hashlib.sha256(job.payload["input"].encode()).hexdigest()}


worker.start()
try:
    with djob.Client(config) as client:
        job_id = client.submit("compute", {"input": "installed by pip"})
        job = client.wait(job_id, timeout=60)
finally:
    worker.stop()
    worker.close()
assert job["status"] == "completed", job
assert job["result"]["by"] == "python", job
assert job["result"]["value"] == hashlib.sha256(b"installed by pip").hexdigest(), job
assert handled == [job_id], handled
print(f"job {job_id} completed by the Python worker; libdjob from {djob.library_path}")
'''


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def run(argv, env, cwd, timeout, what):
    start = time.monotonic()
    try:
        r = subprocess.run(argv, env=env, cwd=cwd, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired as e:
        fail(f"{what}: no end after {timeout} s\n{e.output or ''}")
    if r.returncode != 0:
        fail(f"{what}: exit {r.returncode}\n{r.stdout}")
    print(f"{what}: ok in {time.monotonic() - start:.1f} s")
    return r.stdout


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), "..", ".."))
    missing = [v for v in ("DJOB_KAFKA_BROKERS", "DJOB_MONGO_URI") if not os.environ.get(v)]
    if missing:
        fail(f"{' and '.join(missing)} not set: run scripts/devstack up and source .devstack/env")

    # The venv sees none of the build tree's or the caller's Python set-up.
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJOB_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    tmp = tempfile.mkdtemp(prefix="djob-pip-")
    try:
        venv = os.path.join(tmp, "venv")
        python = os.path.join(venv, "bin", "python")
        run([sys.executable, "-m", "venv", venv], env, tmp, 60, "python3 -m venv")
        run([python, "-m", "pip", "install", "--no-input", os.path.join(root, "bindings", "python")],
            env, tmp, 300, "pip install ./bindings/python")
        script = os.path.join(tmp, "job.py")
        with open(script, "w") as f:
            f.write(JOB_SCRIPT)
        out = run([python, script], env, tmp, 120, "worker and client in the venv")
        print(out, end="")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
