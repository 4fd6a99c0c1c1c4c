"""codec: the C pickler for plain data, cloudpickle for what lives in __main__ or is refused."""

from __future__ import annotations

import pickle
import subprocess
import sys

from raftfleet_ray import codec


def test_plain_data_round_trips_with_the_c_pickler() -> None:
    value = {"k": (1, 2.5, "s", b"b", None, [True])}
    data = codec.dumps(value)
    assert data == pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    assert codec.loads(data) == value


def test_lambdas_fall_back_to_cloudpickle() -> None:
    f = codec.loads(codec.dumps(lambda x: x + 1))
    assert f(1) == 2


def test_main_classes_travel_by_value() -> None:
    """An instance of a class defined in a script's __main__ must load in another process."""
    script = (
        "import sys\n"
        "from raftfleet_ray import codec\n"
        "class Point:\n"
        "    def __init__(self, x): self.x = x\n"
        "sys.stdout.buffer.write(codec.dumps(Point(3)))\n"
    )
    data = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout
    assert codec.loads(data).x == 3
