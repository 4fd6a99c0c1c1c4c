"""The cluster configs in deploy/: valid for the Ray cluster launcher that is installed (its
own ``ray-schema.json``, then the checks ``ray up`` runs before launching anything), and
each zone node declares what ``activate_all()`` reads: one ``zone:<name>`` resource."""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SCHEMA = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
CONFIGS = ["aws-zones.yaml", "onprem.yaml"]


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_valid_against_the_schema_ray_ships(name):
    jsonschema.validate(load(name), SCHEMA)


@pytest.mark.parametrize("name", CONFIGS)
def test_accepted_by_the_launchers_own_checks(name):
    """What ``ray up`` does first (fill in the provider's defaults, then validate), offline."""
    util = pytest.importorskip("ray.autoscaler._private.util")
    prepared = util.prepare_config(copy.deepcopy(load(name)))
    util.validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_aws_has_one_worker_type_per_zone_pinned_to_it():
    cfg = load("aws-zones.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert not [r for r in head["resources"] if r.startswith("zone:")]  # the head hosts no member
    zones = []
    for name, t in types.items():
        if name == cfg["head_node_type"]:
            continue
        (res,) = [r for r in t["resources"] if r.startswith("zone:")]
        zone = res.removeprefix("zone:")
        zones.append(zone)
        assert t["resources"][res] >= 1
        assert t["labels"] == {"raftfleet.io/zone": zone}
        assert t["node_config"]["Placement"]["AvailabilityZone"] == zone
        assert zone.startswith(cfg["provider"]["region"])
        assert 1 <= t["min_workers"] <= t["max_workers"]
    assert sorted(zones) == sorted(cfg["provider"]["availability_zone"].split(","))
    assert len(zones) >= 3  # a majority of a 3-replica group survives losing any one zone
    assert cfg["max_workers"] >= sum(t.get("min_workers", 0) for t in types.values())


def test_labels_are_valid_ray_node_labels():
    labels = pytest.importorskip("ray._private.label_utils")
    for t in load("aws-zones.yaml")["available_node_types"].values():
        labels.validate_node_labels(t.get("labels", {}))
        labels.validate_node_label_syntax(t.get("labels", {}))


def test_onprem_uses_the_local_provider_and_each_machine_names_its_zone(tmp_path):
    cfg = load("onprem.yaml")
    assert cfg["provider"]["type"] == "local"
    assert cfg["provider"]["head_ip"] and len(cfg["provider"]["worker_ips"]) >= 3
    assert "available_node_types" not in cfg  # the local provider makes its own single type
    # The worker start command, run with a fake `ray`: the zone file becomes the resource.
    command = cfg["worker_start_ray_commands"][-1]
    zone_file = tmp_path / "zone"
    script = command.replace("/etc/raftfleet/zone", str(zone_file))
    fake = 'ray() { printf "%s\\n" "$@"; }; RAY_HEAD_IP=10.0.0.10; '

    def run() -> list[str]:
        out = subprocess.run(["bash", "-c", fake + script], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    zone_file.write_text("dc1-a\n")
    args = run()
    assert args[:2] == ["start", "--address=10.0.0.10:6379"]
    resources = json.loads(args[2].removeprefix("--resources="))
    assert resources == {"zone:dc1-a": 1}
    assert args[3] == "--labels=raftfleet.io/zone=dc1-a"
    label_utils = pytest.importorskip("ray._private.label_utils")
    assert label_utils.parse_node_labels_string(args[3].removeprefix("--labels=")) == {"raftfleet.io/zone": "dc1-a"}
    zone_file.unlink()  # no zone file: the machine joins without a zone
    assert run() == ["start", "--address=10.0.0.10:6379"]
    assert shlex.split(cfg["head_start_ray_commands"][-1])  # plain shell


def test_readme_commands():
    text = (DEPLOY / "README.md").read_text()
    for snippet in ("ray up deploy/aws-zones.yaml", "raftfleet activate --all", "raftfleet status",
                    "ray up deploy/onprem.yaml"):
        assert snippet in text
