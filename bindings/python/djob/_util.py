"""Helpers shared by Client and Worker: error checks, argument conversion,
configurations and the guarded native handle."""

import ctypes
import json
import threading

from . import _ffi
from .errors import DjobError, InvalidError, StateError, error_for


def check(rc, err):
    """Raise the DjobError subclass for a negative return code."""
    if rc < 0:
        message = err.message.decode("utf-8", "replace")
        if not message:
            message = (_ffi.djob_strerror(rc) or b"Unknown error").decode("utf-8", "replace")
        raise error_for(rc, message, bool(err.retriable))
    return rc


def to_bytes(value, what):
    """A str argument as NUL-free UTF-8 bytes for a const char * parameter."""
    if not isinstance(value, str):
        raise InvalidError(f"{what} must be a str, not {type(value).__name__}")
    data = value.encode("utf-8")
    if b"\0" in data:
        raise InvalidError(f"{what} must not contain NUL characters")
    return data


def opt_bytes(value, what):
    return None if value is None else to_bytes(value, what)


def to_json(value, what):
    """Serialize to strict JSON (no NaN or Infinity) as bytes."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise InvalidError(f"{what} cannot be sent as JSON: {e}") from None


def from_json(text):
    return None if text is None else json.loads(text)


def config_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise InvalidError(f"configuration values must be str, int, float or bool, "
                       f"not {type(value).__name__}")


def new_config(config):
    """A djob_config_t: defaults, then the environment (djob_config_load_env),
    then every key of `config` (a dict, or None). The caller frees it."""
    if config is not None and not isinstance(config, dict):
        raise InvalidError(f"config must be a dict or None, not {type(config).__name__}")
    err = _ffi.Error()
    conf = ctypes.c_void_p()
    check(_ffi.djob_config_new(ctypes.byref(conf), ctypes.byref(err)), err)
    try:
        check(_ffi.djob_config_load_env(conf, ctypes.byref(err)), err)
        for key, value in (config or {}).items():
            check(_ffi.djob_config_set(conf, to_bytes(key, "a configuration key"),
                                       to_bytes(config_value(value), f"config[{key!r}]"),
                                       ctypes.byref(err)), err)
    except BaseException:
        _ffi.djob_config_free(conf)
        raise
    return conf


class Handle:
    """A native pointer shared by threads. borrow() lends it for one call and
    raises StateError once closed; close() waits until no call holds it, so
    a concurrent close never frees memory another thread is using."""

    def __init__(self, ptr, free, what):
        self._ptr = ptr
        self._free = free
        self._what = what
        self._users = 0
        self._cv = threading.Condition()

    @property
    def closed(self):
        return self._ptr is None

    def borrow(self):
        return _Borrow(self)

    def close(self):
        with self._cv:
            ptr, self._ptr = self._ptr, None
            while self._users:
                self._cv.wait()
        if ptr is not None:
            self._free(ptr)


class _Borrow:
    __slots__ = ("_h",)

    def __init__(self, h):
        self._h = h

    def __enter__(self):
        h = self._h
        with h._cv:
            if h._ptr is None:
                raise StateError(f"The {h._what} is closed")
            h._users += 1
            return h._ptr

    def __exit__(self, *exc):
        h = self._h
        with h._cv:
            h._users -= 1
            if not h._users:
                h._cv.notify_all()
        return False


__all__ = ["check", "to_bytes", "opt_bytes", "to_json", "from_json", "new_config", "Handle",
           "DjobError"]
