"""How user values travel: the C pickler when it can, cloudpickle when it must.

Arguments and results are pickled once per command on the hot path; ``pickle`` is
several times faster than cloudpickle for plain data, and cloudpickle is only needed for
what ``pickle`` refuses (lambdas, classes defined in ``__main__`` or a notebook). Both
produce data that ``pickle.loads`` reads.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle


def dumps(value: Any) -> bytes:
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - anything the C pickler refuses, cloudpickle may take
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    # pickle refers to classes and functions by module; one defined in __main__ (a script or
    # a notebook) does not exist in the actors, and cloudpickle sends it by value instead.
    if b"__main__" in data:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return data


loads = pickle.loads
