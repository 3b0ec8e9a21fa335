"""djob: Python bindings over libdjob (ctypes).

    import djob

    with djob.Client() as client:           # configuration from DJOB_* variables
        job_id = client.submit("compute", {"input": "hello"})
        print(client.wait(job_id)["result"])

    worker = djob.Worker({"concurrency": 2})

    @worker.handler("compute")
    def compute(job):
        return {"value": job.payload["input"].upper()}

    worker.run()

The shared library is found through DJOB_LIBRARY_PATH, then inside this
package (where a wheel built by `pip install ./bindings/python` puts it),
then the system: djob/_lib.py decides.
"""

from . import _ffi
from .client import Client
from .errors import (ConflictError, DjobError, DjobTimeout, ForbiddenError, HttpError,
                     InternalError, InvalidError, KafkaError, MongoError, NotFoundError,
                     OutOfMemoryError, StateError, TooBigError, UnauthorizedError)
from .worker import Job, Retry, Worker

__version__ = "0.1.0"

#: Path of the libdjob shared library that was loaded.
library_path = _ffi.library_path


def library_version():
    """The version of the loaded libdjob ("0.1.0")."""
    return _ffi.djob_version().decode()


__all__ = [
    "Client", "Worker", "Job", "Retry",
    "DjobError", "InvalidError", "NotFoundError", "ConflictError", "DjobTimeout",
    "KafkaError", "MongoError", "OutOfMemoryError", "StateError", "HttpError",
    "TooBigError", "UnauthorizedError", "ForbiddenError", "InternalError",
    "library_path", "library_version",
]
