"""Every libdjob function the bindings call, with its argtypes and restype.

Conventions:
- Strings go in as bytes (c_char_p); the library copies them.
- Strings the library allocates and hands over (char ** outputs) are declared
  as POINTER(c_void_p), so ctypes never converts them to bytes behind our
  back; take_string() copies and releases them with djob_free.
- Strings the library lends (getters) are c_char_p results: ctypes copies
  them and nobody frees them.
- Every fallible function takes a djob_error_t * last.
"""

import ctypes
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_int, c_long,
                    c_size_t, c_void_p)

from . import _lib

lib, library_path = _lib.load()

DJOB_ERROR_MESSAGE_MAX = 256
DJOB_SUBMIT_OPTS_VERSION = 1

# djob_job_status_t
JOB_DONE = 0
JOB_RETRY = 1
JOB_FAIL = 2


class Error(Structure):
    """djob_error_t"""
    _fields_ = [("code", c_int), ("retriable", c_int),
                ("message", c_char * DJOB_ERROR_MESSAGE_MAX)]


class SubmitOpts(Structure):
    """djob_submit_opts_t (version 1)"""
    _fields_ = [("version", c_int), ("run_at", c_char_p), ("max_attempts", c_int),
                ("idempotency_key", c_char_p)]


# djob_job_status_t (*djob_handler_fn)(djob_job_t *job, void *user_data)
HANDLER_FN = CFUNCTYPE(c_int, c_void_p, c_void_p)

_out = POINTER(c_void_p)   # char ** / djob_x_t ** outputs
_err = POINTER(Error)


def _declare(name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    globals()[name] = fn


# common.h, error.h, version.h
_declare("djob_free", None, c_void_p)
_declare("djob_strerror", c_char_p, c_int)
_declare("djob_version", c_char_p)

# config.h
_declare("djob_config_new", c_int, _out, _err)
_declare("djob_config_free", None, c_void_p)
_declare("djob_config_set", c_int, c_void_p, c_char_p, c_char_p, _err)
_declare("djob_config_get", c_char_p, c_void_p, c_char_p)
_declare("djob_config_load_env", c_int, c_void_p, _err)

# client.h
_declare("djob_client_new", c_int, _out, c_void_p, _err)
_declare("djob_client_free", None, c_void_p)
_declare("djob_client_submit", c_int, _out, c_void_p, c_char_p, c_char_p, c_size_t,
         POINTER(SubmitOpts), _err)
_declare("djob_client_submit_json", c_int, _out, POINTER(c_int), c_void_p, c_char_p,
         c_size_t, c_char_p, _err)
_declare("djob_client_get", c_int, _out, c_void_p, c_char_p, _err)
_declare("djob_client_update", c_int, _out, c_void_p, c_char_p, c_char_p, c_size_t, _err)
_declare("djob_client_list", c_int, _out, c_void_p, c_char_p, c_char_p, c_int, c_char_p,
         _err)
_declare("djob_client_cancel", c_int, _out, c_void_p, c_char_p, _err)
_declare("djob_client_retry", c_int, _out, c_void_p, c_char_p, _err)
_declare("djob_client_wait", c_int, _out, c_void_p, c_char_p, c_int, _err)
_declare("djob_client_stats", c_int, _out, c_void_p, _err)
_declare("djob_client_job_stats", c_int, _out, c_void_p, _err)
_declare("djob_client_workers", c_int, _out, c_void_p, _err)
_declare("djob_client_schedule_create", c_int, _out, c_void_p, c_char_p, c_size_t, _err)
_declare("djob_client_schedule_list", c_int, _out, c_void_p, _err)
_declare("djob_client_schedule_get", c_int, _out, c_void_p, c_char_p, _err)
_declare("djob_client_schedule_delete", c_int, c_void_p, c_char_p, _err)
_declare("djob_client_ping", c_int, c_void_p, POINTER(c_int), POINTER(c_int), _err)

# worker.h
_declare("djob_worker_new", c_int, _out, c_void_p, _err)
_declare("djob_worker_free", None, c_void_p)
_declare("djob_worker_register", c_int, c_void_p, c_char_p, HANDLER_FN, c_void_p, _err)
_declare("djob_worker_load_plugin", c_int, c_void_p, c_char_p, _err)
_declare("djob_worker_run", c_int, c_void_p, _err)
_declare("djob_worker_stop", c_int, c_void_p, _err)
_declare("djob_worker_request_stop", None, c_void_p)
_declare("djob_worker_is_running", c_int, c_void_p)
_declare("djob_worker_stats", c_int, _out, c_void_p, _err)
_declare("djob_worker_id", c_char_p, c_void_p)

# job.h (handlers)
_declare("djob_job_id", c_char_p, c_void_p)
_declare("djob_job_type", c_char_p, c_void_p)
_declare("djob_job_payload", c_void_p, c_void_p, POINTER(c_size_t))
_declare("djob_job_attempts", c_int, c_void_p)
_declare("djob_job_max_attempts", c_int, c_void_p)
_declare("djob_job_worker_id", c_char_p, c_void_p)
_declare("djob_job_set_result", c_int, c_void_p, c_char_p, c_size_t, _err)
_declare("djob_job_set_error", c_int, c_void_p, c_char_p)
_declare("djob_job_should_stop", c_int, c_void_p)
_declare("djob_job_set_progress", c_int, c_void_p, c_double, c_char_p)
_declare("djob_id_is_valid", c_int, c_char_p)
_declare("djob_type_is_valid", c_int, c_char_p)
_declare("djob_sha256_hex", None, c_void_p, c_size_t, c_char * 65)


def take_string(ptr):
    """Copy a library-allocated NUL-terminated string and free it.
    Returns str, or None for NULL."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        djob_free(ptr)
