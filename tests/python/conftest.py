"""Fixtures for the python suite: the in-tree package, the live dev stack,
and per-test names so runs never see each other's data.

The suite needs the dev stack (scripts/devstack up) and fails, never skips,
without it. DJOB_LIBRARY_PATH names the library (meson sets it to the built
one); unset, build/libdjob/libdjob.so.0 is used when it exists.
"""

import os
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
_built = os.path.join(ROOT, "build", "libdjob", "libdjob.so.0")
if not os.environ.get("DJOB_LIBRARY_PATH") and os.path.exists(_built):
    os.environ["DJOB_LIBRARY_PATH"] = _built

import djob  # noqa: E402
from _helpers import compute_handler  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def stack():
    """Kafka and MongoDB answer; otherwise every test fails here."""
    with djob.Client({"mongo.collection": "python_ping"}) as client:
        status = client.ping()
    if not (status["kafka"] and status["mongo"]):
        pytest.fail(f"dev stack not reachable ({status}; DJOB_KAFKA_BROKERS="
                    f"{os.environ.get('DJOB_KAFKA_BROKERS')}, DJOB_MONGO_URI="
                    f"{os.environ.get('DJOB_MONGO_URI')}): run scripts/devstack up",
                    pytrace=False)
    return status


@pytest.fixture
def config():
    """This test's own topics, consumer group and collection, removed from
    the servers afterwards (tests/e2e/e2e_count --drop)."""
    tag = f"{os.getpid()}{uuid.uuid4().hex[:10]}"
    conf = {
        "topic.prefix": f"py{tag}.",
        "group.id": f"pyg{tag}",
        "mongo.collection": f"pyjobs_{tag}",
        "lease.ms": "2000",
        "kafka.session.timeout.ms": "6000",
    }
    yield conf
    tool = os.environ.get("DJOB_E2E_COUNT")
    if tool:
        out = subprocess.run([tool, "--drop", conf["mongo.collection"], conf["topic.prefix"],
                              conf["group.id"]], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            sys.stderr.write(f"warning: could not remove {conf['mongo.collection']}: "
                             f"{out.stderr.strip()}\n")


@pytest.fixture
def client(config):
    c = djob.Client(config)
    yield c
    c.close()


@pytest.fixture
def make_worker(config):
    """make_worker({"compute": fn, ...}) -> a started Worker on this test's
    config; stopped and closed at teardown."""
    workers = []

    def make(handlers=None, extra=None):
        w = djob.Worker({**config, **(extra or {})})
        for type_, fn in (handlers or {"compute": compute_handler}).items():
            w.register(type_, fn)
        w.start()
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.close()
