"""A local Ray for the Ray Train tests of this folder (one per test session)."""
import pytest
import ray

from simcit.train.ray_runtime import connect_ray


@pytest.fixture(scope="session")
def local_ray():
    started = connect_ray(None, min_local_cpus=3, log=lambda m: None)
    yield
    if started:
        ray.shutdown()
