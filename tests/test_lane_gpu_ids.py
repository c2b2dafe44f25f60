"""A sweep under CUDA_VISIBLE_DEVICES (one sweep per GPU of a node) finds its GPU's lane.

Ray hands a task the entries of its raylet's CUDA_VISIBLE_DEVICES ("2"), not 0..n-1, so lanes
named 0..n-1 ran on another GPU and every trial made a lane of its own, which Ray ended with the
trial's actor and every candidate queued on it. Here the GPUs are Ray resources of a local node
(no CUDA): the names and lifetimes are Ray's own."""
import pytest
import ray

from kernelevolve.tuner.execution import lanes
from kernelevolve.tuner.execution.local_ray import loopback_init_kwargs


@pytest.mark.parametrize("visible, count, ids", [
    ("2", 1, ["2"]),
    ("1,3", 2, ["1", "3"]),
    (" 5 , 6,7", 2, ["5", "6"]),  # Ray gives out the first `count` of a longer list
    ("", 2, ["0", "1"]),
    (None, 1, ["0"]),
    ("2", 2, ["0", "1"]),  # fewer entries than GPUs: not a list Ray could have used
])
def test_node_gpu_ids_follow_the_raylets_visible_devices(visible, count, ids):
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert lanes.node_gpu_ids(count, env) == ids


@pytest.fixture
def gpu_two_visible(monkeypatch):
    ray.shutdown()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")  # the raylet started here inherits it
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             **loopback_init_kwargs(), logging_level="ERROR")
    yield
    ray.shutdown()


@ray.remote(num_gpus=1, num_cpus=0)
class _Trial:
    """Stands for a trial actor: Ray gives it the GPU, and it asks for its lane."""

    def gpu_ids(self):
        return ray.get_gpu_ids()

    def lane_name(self, sweep_id):
        lane = lanes.my_lane(sweep_id)
        ray.get(lane.close.remote())  # the lane answers
        return lanes.lane_name(sweep_id, ray.get_runtime_context().get_node_id(), str(ray.get_gpu_ids()[0]))


@pytest.mark.slow
def test_lanes_are_named_as_ray_numbers_the_gpus_and_outlive_the_trial(gpu_two_visible):
    import os

    node = ray.get_runtime_context().get_node_id()
    started = {lanes.lane_name("s1", node, gpu) for gpu in lanes.node_gpu_ids(1, os.environ)}
    trial = _Trial.remote()
    assert ray.get(trial.gpu_ids.remote()) == ["2"]
    # the lane the sweep starts for this GPU is the one a trial of it asks for
    assert started == {lanes.lane_name("s1", node, "2")}
    # a GPU the sweep started no lane for: the sweep's keeper starts it on the trial's request,
    # and it outlives the trial's actor
    lanes.start_keeper("s2", {}, ".")
    name = ray.get(trial.lane_name.remote("s2"))
    ray.kill(trial)
    lane = lanes.named_lane(name)
    assert lane is not None
    ray.get(lane.close.remote(), timeout=60)
    lanes.stop_lanes("s2")  # and the sweep's end ends it and its keeper
    assert lanes.named_lane(name) is None and lanes.named_lane(lanes.keeper_name("s2")) is None


def _pending_on_lanes_that(die: int, monkeypatch):
    """A compiled candidate whose lane request fails `die` times with a dead lane actor."""
    from kernelevolve.tuner.execution import trial

    sent = []

    def get(ref, timeout=None):
        sent.append(ref)
        if len(sent) <= die:
            raise ray.exceptions.RayActorError()
        return {"status": "ok", "latency_ms": 1.0}

    monkeypatch.setattr(trial.ray, "get", get)
    resends = iter(["resent", "resent again"])
    pending = trial._Pending(compiled={"status": "ok", "compile_s": 0.2}, ref="queued",
                             send=lambda: next(resends), queued=0.0, retries=1, timeout=1.0)
    return trial.finish(pending), sent


def test_a_candidate_queued_on_a_lane_that_died_is_sent_once_more(monkeypatch):
    reply, sent = _pending_on_lanes_that(1, monkeypatch)
    assert sent == ["queued", "resent"]
    assert reply["status"] == "ok" and reply["retries"] == 1 and reply["compile_s"] == 0.2


def test_a_lane_that_dies_twice_is_the_candidates_recorded_cause(monkeypatch):
    reply, sent = _pending_on_lanes_that(2, monkeypatch)
    assert sent == ["queued", "resent"]
    assert reply["status"] == "runtime_error" and reply["error"].startswith("GPU lane failed: RayActorError")
