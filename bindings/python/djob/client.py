"""Client: submit, query and update jobs (libdjob's djob_client_t)."""

import atexit
import ctypes
import datetime
import weakref

from . import _ffi
from ._util import Handle, check, from_json, new_config, opt_bytes, to_bytes, to_json
from .errors import InvalidError

_live = weakref.WeakSet()

# Python keyword -> job document field, for update() and submit_many().
_FIELD_NAMES = {
    "worker_id": "workerId",
    "lease_ms": "leaseMs",
    "max_attempts": "maxAttempts",
    "run_at": "runAt",
    "idempotency_key": "idempotencyKey",
}


def _iso(run_at):
    """run_at as ISO-8601 UTC text: a str is passed as is; a datetime is
    converted (a naive one is taken as local time, as datetime does)."""
    if run_at is None or isinstance(run_at, str):
        return run_at
    if isinstance(run_at, datetime.datetime):
        utc = run_at.astimezone(datetime.timezone.utc)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    raise InvalidError(f"run_at must be a datetime or an ISO-8601 str, "
                       f"not {type(run_at).__name__}")


def _check_id(job_id):
    return to_bytes(job_id, "job id")


class Client:
    """Submits, reads and updates jobs.

    config: a dict of libdjob configuration keys ("kafka.brokers",
    "mongo.uri", "mongo.collection", "topic.prefix", ...) applied over the
    environment (DJOB_KAFKA_BROKERS, DJOB_MONGO_URI, ...), or None for the
    environment alone. Servers are reached at first use.

    A client may be shared by threads; calls release the GIL while the
    library works. close() (or leaving a with block) frees it; any later
    call raises djob.StateError.
    """

    def __init__(self, config=None):
        conf = new_config(config)
        try:
            err = _ffi.Error()
            ptr = ctypes.c_void_p()
            check(_ffi.djob_client_new(ctypes.byref(ptr), conf, ctypes.byref(err)), err)
        finally:
            _ffi.djob_config_free(conf)
        self._h = Handle(ptr, _ffi.djob_client_free, "client")
        _live.add(self)

    # -- lifetime --

    def close(self):
        """Flush what is in flight and free the client. Idempotent. Calls in
        progress in other threads (a wait, say) finish first; later calls
        raise StateError."""
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
        if h is not None:
            h.close()

    # -- calls --

    def _call_json(self, fn, *args):
        """Call fn(char **out, client, *args, err) and return the parsed
        JSON it hands back."""
        out = ctypes.c_void_p()
        err = _ffi.Error()
        with self._h.borrow() as ptr:
            rc = fn(ctypes.byref(out), ptr, *args, ctypes.byref(err))
        text = _ffi.take_string(out.value)
        check(rc, err)
        return from_json(text)

    def submit(self, type, payload, run_at=None, max_attempts=None, idempotency_key=None):
        """Submit one job and return its id once Kafka has it.

        type: a job type name ("compute", ...); payload: a dict (a JSON
        object); run_at: a datetime or ISO-8601 str to start at; max_attempts:
        1..1000; idempotency_key: a repeat with the same key returns the
        first job's id. Raises InvalidError for a bad type or payload."""
        if not isinstance(payload, dict):
            raise InvalidError(f"payload must be a dict, not {type_name(payload)}")
        type_b = to_bytes(type, "type")
        body = to_json(payload, "payload")
        opts = _ffi.SubmitOpts(_ffi.DJOB_SUBMIT_OPTS_VERSION, None, 0, None)
        opts.run_at = opt_bytes(_iso(run_at), "run_at")
        if max_attempts is not None:
            if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) \
                    or not 1 <= max_attempts <= 1000:
                raise InvalidError("max_attempts must be an integer from 1 to 1000")
            opts.max_attempts = max_attempts
        opts.idempotency_key = opt_bytes(idempotency_key, "idempotency_key")
        out = ctypes.c_void_p()
        err = _ffi.Error()
        with self._h.borrow() as ptr:
            rc = _ffi.djob_client_submit(ctypes.byref(out), ptr, type_b, body, len(body),
                                         ctypes.byref(opts), ctypes.byref(err))
        job_id = _ffi.take_string(out.value)
        check(rc, err)
        return job_id

    def submit_many(self, jobs):
        """Submit a batch atomically: jobs is a list of dicts with "type",
        "payload" and optionally "run_at", "max_attempts", "idempotency_key"
        (or their JSON names). Returns the ids in order. A bad element
        rejects the whole batch and stores nothing."""
        if not isinstance(jobs, (list, tuple)):
            raise InvalidError(f"jobs must be a list of dicts, not {type_name(jobs)}")
        batch = []
        for i, job in enumerate(jobs):
            if not isinstance(job, dict):
                raise InvalidError(f"jobs[{i}] must be a dict, not {type_name(job)}")
            if not isinstance(job.get("payload"), dict):
                raise InvalidError(f"jobs[{i}]['payload'] must be a dict, "
                                   f"not {type_name(job.get('payload'))}")
            doc = {_FIELD_NAMES.get(k, k): v for k, v in job.items()}
            if "runAt" in doc:
                doc["runAt"] = _iso(doc["runAt"])
            batch.append(doc)
        body = to_json(batch, "jobs")
        created = ctypes.c_int()
        response = self._submit_json(body, created)
        return list(response["jobIds"])

    def _submit_json(self, body, created):
        out = ctypes.c_void_p()
        err = _ffi.Error()
        with self._h.borrow() as ptr:
            rc = _ffi.djob_client_submit_json(ctypes.byref(out), ctypes.byref(created), ptr,
                                              body, len(body), None, ctypes.byref(err))
        text = _ffi.take_string(out.value)
        check(rc, err)
        return from_json(text)

    def get(self, job_id):
        """The job document as a dict. NotFoundError for an unknown id,
        InvalidError for a malformed one."""
        return self._call_json(_ffi.djob_client_get, _check_id(job_id))

    def update(self, job_id, **fields):
        """Apply a change as PATCH /jobs/:id does: status=, result= (dict),
        error= (str), and for fencing worker_id= and attempts=. Returns the
        updated job. ConflictError for an illegal transition or a stale
        lease."""
        if not fields:
            raise InvalidError("update needs at least one field")
        body = to_json({_FIELD_NAMES.get(k, k): v for k, v in fields.items()}, "fields")
        return self._call_json(_ffi.djob_client_update, _check_id(job_id), body, len(body))

    def list(self, status=None, type=None, limit=100, after=None):
        """One page of jobs, newest first: (jobs, next) where next is the
        cursor for the following page (after=next), or None on the last."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidError("limit must be an integer from 1 to 1000")
        page = self._call_json(_ffi.djob_client_list, opt_bytes(status, "status"),
                               opt_bytes(type, "type"), limit, opt_bytes(after, "after"))
        return page["jobs"], page.get("next")

    def cancel(self, job_id):
        """Cancel a job that has not finished; returns the job. ConflictError
        when it has."""
        return self._call_json(_ffi.djob_client_cancel, _check_id(job_id))

    def retry(self, job_id):
        """Requeue a failed, cancelled or quarantined job and publish it again; returns
        the job."""
        return self._call_json(_ffi.djob_client_retry, _check_id(job_id))

    def wait(self, job_id, timeout=30.0):
        """Wait until the job is completed, failed, cancelled or quarantined and return it.
        DjobTimeout when timeout (seconds) passes first."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0 <= timeout <= 2147483:
            raise InvalidError("timeout must be a number of seconds from 0 to 2147483")
        return self._call_json(_ffi.djob_client_wait, _check_id(job_id),
                               int(timeout * 1000))

    def stats(self):
        """Counters of the submissions made through this client:
        {"submissions", "submittedJobs", "submitWrites"}. Submissions made by
        several threads at once are written together, so submitWrites may
        be lower than submissions."""
        return self._call_json(_ffi.djob_client_stats)

    def job_stats(self):
        """The jobs of the collection, as GET /stats answers: {"asOf",
        "total", "byStatus": {status: n}, "byType": {type: {"total",
        status: n}}, "throughput": {"perMinute"|"perSecond": {"start",
        "intervalSeconds", "completed": [60 counts], "failed": [...]}}}.
        Read at most about once a second, so exact once jobs stop changing."""
        return self._call_json(_ffi.djob_client_job_stats)

    def workers(self):
        """The workers of the consumer group (config group.id) as Kafka
        sees them, as GET /workers answers: {"asOf", "group", "state",
        "workers": [{"id", "host", "partitions": [{"topic", "partition",
        "committed", "end", "lag"}], "lag"}], "unassigned": [partitions no
        worker holds], "lag": {"total", "byTopic": {topic: n}}}. committed
        is -1 where the group has committed nothing. Asks Kafka each time;
        raises KafkaError when it does not answer within about 4 s."""
        return self._call_json(_ffi.djob_client_workers)

    def create_schedule(self, name, cron, type, payload=None, timezone=None,
                        max_attempts=None):
        """Create a periodic job: one job of `type` with `payload` at every
        due time of `cron` (5 fields) in `timezone` ("UTC" or "+05:30").
        Returns the schedule (with "nextRunAt"). Raises InvalidError naming
        a bad field, ConflictError when the name exists."""
        job = {"type": type, "payload": {} if payload is None else payload}
        if max_attempts is not None:
            job["maxAttempts"] = max_attempts
        body = {"name": name, "cron": cron, "job": job}
        if timezone is not None:
            body["timezone"] = timezone
        text = to_json(body, "schedule")
        return self._call_json(_ffi.djob_client_schedule_create, text, len(text))

    def schedules(self):
        """Every schedule, by name: a list of dicts."""
        return self._call_json(_ffi.djob_client_schedule_list)["schedules"]

    def schedule(self, name):
        """One schedule; NotFoundError when there is none."""
        return self._call_json(_ffi.djob_client_schedule_get, to_bytes(name, "name"))

    def delete_schedule(self, name):
        """Delete a schedule (its submitted jobs stay); NotFoundError."""
        err = _ffi.Error()
        with self._h.borrow() as ptr:
            rc = _ffi.djob_client_schedule_delete(ptr, to_bytes(name, "name"), ctypes.byref(err))
        check(rc, err)

    def ping(self):
        """Whether the servers answer: {"kafka": bool, "mongo": bool}."""
        kafka_ok, mongo_ok = ctypes.c_int(), ctypes.c_int()
        err = _ffi.Error()
        with self._h.borrow() as ptr:
            _ffi.djob_client_ping(ptr, ctypes.byref(kafka_ok), ctypes.byref(mongo_ok),
                                  ctypes.byref(err))
        return {"kafka": bool(kafka_ok.value), "mongo": bool(mongo_ok.value)}


def type_name(value):
    return type(value).__name__


@atexit.register
def _close_all():
    for client in list(_live):
        client.close()
