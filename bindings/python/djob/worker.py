"""Worker: consume jobs and run Python handlers (libdjob's djob_worker_t)."""

import atexit
import ctypes
import json
import threading
import traceback
import weakref

from . import _ffi
from ._util import Handle, check, new_config, to_bytes
from .errors import DjobError, InvalidError, StateError

_live = weakref.WeakSet()
_in_handler = threading.local()

# Errors longer than this are cut (tracebacks of deep recursion, say).
MAX_ERROR_BYTES = 16384


class Retry(Exception):
    """Raise from a handler to fail this attempt and let the job be tried
    again later while attempts remain (DJOB_JOB_RETRY). Any other exception
    fails the job for good."""


class Job:
    """The job a handler runs. Valid only during the handler call.

    id, type, payload (a dict), attempts (the attempt now running, from 1),
    max_attempts, worker_id."""

    __slots__ = ("_ptr", "id", "type", "payload", "attempts", "max_attempts", "worker_id")

    def __init__(self, ptr):
        self._ptr = ptr
        self.id = _text(_ffi.djob_job_id(ptr))
        self.type = _text(_ffi.djob_job_type(ptr))
        size = ctypes.c_size_t()
        data = _ffi.djob_job_payload(ptr, ctypes.byref(size))
        self.payload = json.loads(ctypes.string_at(data, size.value)) if data else {}
        self.attempts = _ffi.djob_job_attempts(ptr)
        self.max_attempts = _ffi.djob_job_max_attempts(ptr)
        self.worker_id = _text(_ffi.djob_job_worker_id(ptr))

    def should_stop(self):
        """True when the handler should give up early: the worker is stopping
        or the job's lease was lost. Long handlers should poll it."""
        ptr = self._ptr
        return True if ptr is None else bool(_ffi.djob_job_should_stop(ptr))

    def set_progress(self, value, message=None):
        """Report progress: a number and an optional short message (at most
        200 bytes of UTF-8). Cheap: the worker writes the last value at most
        once a second and before the outcome; GET shows it as
        job["progress"] = {"value", "message", "updatedAt"}."""
        ptr = self._ptr
        if ptr is None:
            raise StateError("The job's handler has returned")
        data = None if message is None else str(message).encode("utf-8")
        if _ffi.djob_job_set_progress(ptr, float(value), data) != 0:
            raise InvalidError("progress needs a finite number and a message of at most 200 bytes")

    def __repr__(self):
        return f"Job(id={self.id!r}, type={self.type!r}, attempts={self.attempts})"


def _text(b):
    return None if b is None else b.decode("utf-8", "replace")


def _set_error(ptr, message):
    data = message.encode("utf-8", "replace")
    if len(data) > MAX_ERROR_BYTES:
        data = data[:MAX_ERROR_BYTES].decode("utf-8", "ignore").encode("utf-8") + b"..."
    _ffi.djob_job_set_error(ptr, data.replace(b"\0", b"\\0"))


def _describe(exc):
    """'ValueError: text' and then the traceback."""
    summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return summary + "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def _run_handler(fn, ptr):
    """Run fn on the job at ptr; returns a djob_job_status_t. Never raises:
    an exception escaping a ctypes callback would complete the job."""
    try:
        job = Job(ptr)
        _in_handler.active = True
        try:
            result = fn(job)
        except Retry as e:
            _set_error(ptr, str(e) or "Retry requested")
            return _ffi.JOB_RETRY
        except BaseException as e:
            _set_error(ptr, _describe(e))
            return _ffi.JOB_FAIL
        finally:
            _in_handler.active = False
            job._ptr = None
        if result is None:
            return _ffi.JOB_DONE
        if not isinstance(result, dict):
            _set_error(ptr, f"Handler for {job.type} returned {type(result).__name__}, "
                            f"not a dict")
            return _ffi.JOB_FAIL
        try:
            body = json.dumps(result, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as e:
            _set_error(ptr, f"Handler result cannot be sent as JSON: {e}")
            return _ffi.JOB_FAIL
        err = _ffi.Error()
        if _ffi.djob_job_set_result(ptr, body, len(body), ctypes.byref(err)) < 0:
            _set_error(ptr, err.message.decode("utf-8", "replace"))
            return _ffi.JOB_FAIL
        return _ffi.JOB_DONE
    except BaseException as e:  # the bindings' own failure: fail the job
        try:
            _set_error(ptr, "Python handler wrapper failed: " + _describe(e))
        except BaseException:
            pass
        return _ffi.JOB_FAIL


class Worker:
    """Consumes jobs of the registered types and runs Python handlers.

        worker = djob.Worker({"concurrency": 4})

        @worker.handler("compute")
        def compute(job):
            return {"value": ...}      # the result (a dict); None: no result

    A handler that raises fails the job with the exception's text and
    traceback as its error; raising djob.Retry asks for another attempt.
    Handlers run on the worker's own threads, several at once when
    concurrency > 1.

    run() blocks until stop() is called from another thread (or Ctrl-C);
    start() runs in the background. close() stops and frees the worker.
    """

    def __init__(self, config=None):
        conf = new_config(config)
        try:
            err = _ffi.Error()
            ptr = ctypes.c_void_p()
            check(_ffi.djob_worker_new(ctypes.byref(ptr), conf, ctypes.byref(err)), err)
        finally:
            _ffi.djob_config_free(conf)
        self._h = Handle(ptr, _ffi.djob_worker_free, "worker")
        # The C worker holds these function pointers: they live as long as
        # this object (and the library's copy of the worker) does.
        self._callbacks = {}
        self._lock = threading.Lock()
        self._thread = None
        self._native = False
        self._error = None
        _live.add(self)

    # -- handlers --

    def handler(self, type):
        """Decorator: register the function as the handler of jobs of type."""
        def register(fn):
            self.register(type, fn)
            return fn
        return register

    def register(self, type, fn):
        """Handle jobs of `type` with fn(job) -> dict. Registering a type
        again replaces its handler. Only while the worker is not running."""
        if not callable(fn):
            raise InvalidError(f"handler must be callable, not {type_name(fn)}")
        type_b = to_bytes(type, "type")
        callback = _ffi.HANDLER_FN(lambda ptr, _user: _run_handler(fn, ptr))
        err = _ffi.Error()
        with self._lock, self._h.borrow() as ptr:
            check(_ffi.djob_worker_register(ptr, type_b, callback, None, ctypes.byref(err)),
                  err)
            self._callbacks[type] = callback

    def load_plugin(self, path):
        """Load a C handler plugin (a shared object exporting
        djob_plugin_register)."""
        err = _ffi.Error()
        with self._lock, self._h.borrow() as ptr:
            check(_ffi.djob_worker_load_plugin(ptr, to_bytes(str(path), "path"),
                                               ctypes.byref(err)), err)

    # -- running --

    def _main(self):
        err = _ffi.Error()
        try:
            with self._h.borrow() as ptr:
                rc = _ffi.djob_worker_run(ptr, ctypes.byref(err))
            check(rc, err)
        except BaseException as e:
            self._error = e
        finally:
            # Not under self._lock: _spawn holds it while waiting for us.
            self._native = False

    def _spawn(self):
        """Start the native run loop in a thread of ours (so its errors are
        seen and Ctrl-C reaches run()); return once it is running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise StateError("The worker is already running")
            if self._h.closed:
                raise StateError("The worker is closed")
            self._error = None
            self._native = True
            t = threading.Thread(target=self._main, name="djob-worker", daemon=True)
            self._thread = t
            t.start()
            with self._h.borrow() as ptr:
                while t.is_alive() and not _ffi.djob_worker_is_running(ptr):
                    t.join(0.001)
        return t

    def _raise_error(self):
        e, self._error = self._error, None
        if e is not None:
            raise e

    def run(self):
        """Consume and run jobs until stop() is called from another thread,
        a handler's thread or a signal handler (Ctrl-C stops the worker and
        raises KeyboardInterrupt). Returns after in-flight jobs are drained,
        offsets committed and the group left."""
        t = self._spawn()
        try:
            while t.is_alive():
                t.join(0.25)
        except BaseException:
            self.stop()
            raise
        self._raise_error()

    def start(self):
        """Run in a background thread; returns once consuming has begun.
        Errors of the run loop are raised by stop()."""
        t = self._spawn()
        if not t.is_alive():
            t.join()
            self._raise_error()

    def stop(self):
        """Stop and wait until in-flight jobs are drained and the group left.
        A no-op when not running. Called from a handler, it only asks for
        the stop and returns (a handler cannot wait for itself)."""
        if getattr(_in_handler, "active", False):
            with self._h.borrow() as ptr:
                _ffi.djob_worker_request_stop(ptr)
            return
        with self._lock:
            t = self._thread
            if t is None:
                return
            if self._native:
                err = _ffi.Error()
                with self._h.borrow() as ptr:
                    _ffi.djob_worker_stop(ptr, ctypes.byref(err))
        t.join()
        with self._lock:
            if self._thread is t:
                self._thread = None
        self._raise_error()

    @property
    def running(self):
        t = self._thread
        return t is not None and t.is_alive()

    def stats(self):
        """Counters: running, inFlight, processed, completed, failed,
        retried, skipped, stale, workerId."""
        out = ctypes.c_void_p()
        err = _ffi.Error()
        with self._h.borrow() as ptr:
            rc = _ffi.djob_worker_stats(ctypes.byref(out), ptr, ctypes.byref(err))
        text = _ffi.take_string(out.value)
        check(rc, err)
        return json.loads(text)

    @property
    def id(self):
        with self._h.borrow() as ptr:
            return _text(_ffi.djob_worker_id(ptr))

    # -- lifetime --

    def close(self):
        """Stop if running, then free the worker. Idempotent."""
        if self._h.closed:
            return
        try:
            self.stop()
        finally:
            self._h.close()

    @property
    def closed(self):
        return self._h.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None and not h.closed:
            try:
                self.close()
            except DjobError:
                pass


def type_name(value):
    return type(value).__name__


@atexit.register
def _stop_all():
    # Handlers must not be called once the interpreter is finalizing.
    for worker in list(_live):
        try:
            worker.close()
        except Exception:
            pass
