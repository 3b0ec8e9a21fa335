"""Helpers shared by the python suite's tests."""

import hashlib
import threading
import time


def sha256_hex(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compute_handler(job):
    """What the built-in compute handler does, in Python."""
    return {"message": "Success", "value": sha256_hex(job.payload["input"])}


def wait_until(predicate, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def read_until(read, want, timeout=30.0, interval=0.2):
    """read() until want(answer) holds; the last answer either way."""
    deadline = time.monotonic() + timeout
    while True:
        answer = read()
        if want(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(interval)


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.value = 0

    def incr(self):
        with self.lock:
            self.value += 1
            return self.value
