"""Wrong types, bad input and closed handles raise clean exceptions and never
crash the interpreter; the library lookup names every place it tried."""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

import djob
from _helpers import compute_handler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB_PY = os.path.join(ROOT, "bindings", "python", "djob", "_lib.py")


@pytest.mark.parametrize("payload", ["not a dict", ["a", "list"], None, 42, b"{}"])
def test_submit_with_a_non_dict_payload_raises_invalid_error(client, payload):
    with pytest.raises(djob.InvalidError, match="payload must be a dict"):
        client.submit("compute", payload)


def test_submit_with_bad_input_raises_invalid_error(client):
    with pytest.raises(djob.InvalidError, match="Unknown job type no_such_type"):
        client.submit("no_such_type", {"input": "x"})
    with pytest.raises(djob.InvalidError):
        client.submit("bad type!", {"input": "x"})
    with pytest.raises(djob.InvalidError, match="type must be a str"):
        client.submit(7, {"input": "x"})
    with pytest.raises(djob.InvalidError):
        client.submit("compute", {"$where": "1"})
    with pytest.raises(djob.InvalidError):
        client.submit("compute", {"a.b": 1})
    with pytest.raises(djob.InvalidError, match="cannot be sent as JSON"):
        client.submit("compute", {"input": object()})
    with pytest.raises(djob.InvalidError, match="cannot be sent as JSON"):
        client.submit("compute", {"input": float("nan")})
    with pytest.raises(djob.InvalidError):
        client.submit("compute", {"input": "x"}, max_attempts=0)
    with pytest.raises(djob.InvalidError):
        client.submit("compute", {"input": "x"}, max_attempts="3")
    with pytest.raises(djob.InvalidError):
        client.submit("compute", {"input": "x"}, run_at="tomorrow")
    with pytest.raises(djob.InvalidError):
        client.submit("compute", {"input": "x"}, run_at=12)
    with pytest.raises(djob.InvalidError):
        client.submit("compute\0", {"input": "x"})
    assert client.list() == ([], None), "a refused submission stored a job"


@pytest.mark.parametrize("job_id", ["not-a-uuid", "", "0" * 36,
                                    "00000000-0000-4000-8000-00000000000\0"])
def test_malformed_ids_raise_invalid_error(client, job_id):
    for call in (client.get, client.cancel, client.retry, client.wait):
        with pytest.raises(djob.InvalidError) as e:
            call(job_id)
        assert e.value.code == djob.errors.EINVAL
        assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("job_id", [None, 42, b"00000000-0000-4000-8000-000000000000"])
def test_ids_of_the_wrong_type_raise_invalid_error(client, job_id):
    with pytest.raises(djob.InvalidError, match="job id must be a str"):
        client.get(job_id)


def test_bad_list_arguments_raise_invalid_error(client):
    with pytest.raises(djob.InvalidError, match="Unknown status"):
        client.list(status="bogus")
    with pytest.raises(djob.InvalidError):
        client.list(limit=0)
    with pytest.raises(djob.InvalidError):
        client.list(limit="10")
    with pytest.raises(djob.InvalidError, match="Malformed cursor"):
        client.list(after="nonsense")
    with pytest.raises(djob.InvalidError):
        client.wait("00000000-0000-4000-8000-000000000000", timeout=-1)


def test_bad_configuration_raises_invalid_error(config):
    with pytest.raises(djob.InvalidError):
        djob.Client({"no.such.key": "1"})
    with pytest.raises(djob.InvalidError):
        djob.Client({"api.port": "not a number"})
    with pytest.raises(djob.InvalidError):
        djob.Client({"lease.ms": object()})
    with pytest.raises(djob.InvalidError):
        djob.Client("kafka.brokers=x")
    with pytest.raises(djob.InvalidError):
        djob.Worker({1: "x"})


def test_closed_client_raises_djob_error_for_every_call(config):
    client = djob.Client(config)
    client.close()
    client.close()  # idempotent
    assert client.closed
    job_id = "00000000-0000-4000-8000-000000000000"
    calls = [lambda: client.submit("compute", {"input": "x"}),
             lambda: client.submit_many([{"type": "compute", "payload": {}}]),
             lambda: client.get(job_id), lambda: client.update(job_id, status="failed"),
             lambda: client.list(), lambda: client.cancel(job_id),
             lambda: client.retry(job_id), lambda: client.wait(job_id), client.ping]
    for call in calls:
        with pytest.raises(djob.DjobError, match="The client is closed") as e:
            call()
        assert isinstance(e.value, djob.StateError)
    with djob.Client(config) as c2:
        pass
    with pytest.raises(djob.StateError):
        c2.get(job_id)


def test_closed_worker_raises_djob_error_for_every_call(config):
    worker = djob.Worker(config)
    worker.register("compute", compute_handler)
    worker.close()
    worker.close()
    worker.stop()  # not running: nothing to do
    for call in (lambda: worker.register("compute", compute_handler), worker.run,
                 worker.start, worker.stats, lambda: worker.id):
        with pytest.raises(djob.StateError):
            call()


def test_bad_handlers_raise_invalid_error(config):
    with djob.Worker(config) as worker:
        with pytest.raises(djob.InvalidError, match="must be callable"):
            worker.register("compute", "not callable")
        with pytest.raises(djob.InvalidError):
            worker.register("bad type!", compute_handler)
        with pytest.raises(djob.InvalidError):
            worker.register(None, compute_handler)
        with pytest.raises(djob.InvalidError):
            worker.load_plugin("/nonexistent/plugin.so")


def test_starting_a_running_worker_raises_state_error(config):
    with djob.Worker(config) as worker:
        worker.register("compute", compute_handler)
        worker.start()
        with pytest.raises(djob.StateError, match="already running"):
            worker.start()
        with pytest.raises(djob.StateError):
            worker.register("data", compute_handler)
        assert worker.stats()["running"] is True


def test_errors_carry_code_retriable_and_message():
    e = djob.errors.error_for(-2, "Job not found")
    assert isinstance(e, djob.NotFoundError) and isinstance(e, djob.DjobError)
    assert (e.code, e.retriable, e.message, str(e)) == (-2, False, "Job not found",
                                                        "Job not found")
    assert type(djob.errors.error_for(-5, "x", True)) is djob.KafkaError
    assert djob.errors.error_for(-6, "x").code == -6
    assert type(djob.errors.error_for(-99, "x")) is djob.DjobError


def test_interpreter_survives_a_dropped_client_and_running_worker(config):
    # Nothing closed by hand: the atexit hooks stop and free both.
    code = (
        "import djob, sys\n"
        f"cfg = {config!r}\n"
        "c = djob.Client(cfg)\n"
        "w = djob.Worker(cfg)\n"
        "w.register('compute', lambda job: {})\n"
        "w.start()\n"
        "c.get(c.submit('compute', {'input': 'x'}))\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHONPATH=os.path.join(
                           ROOT, "bindings", "python")))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"


# ---- finding the library ----

def _load_lib_module(directory):
    """A private copy of djob/_lib.py in `directory` (its "package")."""
    path = shutil.copy(LIB_PY, os.path.join(directory, "_lib.py"))
    spec = importlib.util.spec_from_file_location("djob_lib_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_library_raises_one_import_error_listing_every_place(tmp_path, monkeypatch):
    lib = _load_lib_module(tmp_path)
    monkeypatch.setenv("DJOB_LIBRARY_PATH", str(tmp_path / "nowhere" / "libdjob.so.0"))
    monkeypatch.setattr(lib, "SONAME", "libdjob-not-installed.so.0")
    monkeypatch.setattr(lib.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(ImportError) as e:
        lib.load()
    text = str(e.value)
    assert f"DJOB_LIBRARY_PATH: {tmp_path}/nowhere/libdjob.so.0: no such file" in text
    assert f"package: {tmp_path}/libdjob.so.0: no such file" in text
    assert "system (find_library('djob')): not found" in text
    assert "system (loader): libdjob-not-installed.so.0:" in text


def test_library_is_found_in_a_directory_and_in_the_package(tmp_path, monkeypatch):
    built = djob.library_path
    lib = _load_lib_module(tmp_path)
    monkeypatch.setenv("DJOB_LIBRARY_PATH", os.path.dirname(built))
    _, path = lib.load()
    assert os.path.dirname(path) == os.path.dirname(built)

    monkeypatch.delenv("DJOB_LIBRARY_PATH")
    shutil.copy(built, tmp_path / "libdjob.so.0")
    _, path = lib.load()
    assert path == str(tmp_path / "libdjob.so.0")


def test_djob_library_path_wins_over_the_package_copy_and_falls_through_to_it(tmp_path,
                                                                           monkeypatch):
    lib = _load_lib_module(tmp_path)
    shutil.copy(djob.library_path, tmp_path / "libdjob.so")
    monkeypatch.setenv("DJOB_LIBRARY_PATH", djob.library_path)
    _, path = lib.load()
    assert path == djob.library_path
    monkeypatch.setenv("DJOB_LIBRARY_PATH", str(tmp_path / "elsewhere" / "libdjob.so.0"))
    _, path = lib.load()
    assert path == str(tmp_path / "libdjob.so")


def test_library_version_matches_the_package():
    assert djob.library_version() == djob.__version__
