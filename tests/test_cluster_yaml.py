"""cluster.yaml passes Ray's own cluster-config validation and offers the node kinds we target."""
import os

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cluster.yaml")


def load():
    with open(PATH) as fh:
        return yaml.safe_load(fh)


def test_cluster_yaml_is_valid_for_ray():
    validate_config(prepare_config(load()))


def test_cluster_yaml_has_cpu_and_two_gpu_kinds():
    types = load()["available_node_types"]
    kinds = {k for t in types.values() for k in t["resources"] if k.startswith("accelerator_type:")}
    assert {"accelerator_type:H100", "accelerator_type:A100"} <= kinds
    assert any("GPU" not in t["resources"] for name, t in types.items() if name != "head")


def test_validation_catches_a_bad_field():
    cfg = load()
    cfg["available_node_types"]["head"]["bogus"] = 1
    with pytest.raises(Exception, match="bogus"):
        validate_config(prepare_config(cfg))
