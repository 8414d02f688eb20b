"""Shared test settings."""

import pytest
import torch

# The tests use tiny models: one thread avoids oversubscribing CI's two cores.
torch.set_num_threads(1)


# -- the direction-source registry (as torch's common_optimizers.py) ------------------
# Every source and configuration that the contract tests run through. A test that takes
# the argument ``source_name`` runs once per entry; ``kernel_source_name``: once per
# entry with a kernel spec (the Triton path). A new source is one new line here.
def _registry():
    from edgezo.directions import (
        LFSR,
        Gaussian,
        MomentumGuided,
        Pool,
        Rademacher,
        RNGArray,
        Uniform,
        Xorshift,
    )

    return {
        "gaussian": lambda: Gaussian(seed=3),
        "rademacher": lambda: Rademacher(seed=3),
        "uniform": lambda: Uniform(seed=3),
        "uniform-perturbation": lambda: Uniform(seed=3, scale="perturbation"),
        "pool": lambda: Pool(size=4099, seed=3),
        "pool-small": lambda: Pool(size=1001, seed=3),  # P < d: windows wrap several times
        "pool-unit": lambda: Pool(size=4099, seed=3, scale="unit"),
        "pool-perturbation": lambda: Pool(size=4099, seed=3, scale="perturbation"),
        "pool-gaussian": lambda: Pool(size=4099, seed=3, distribution="gaussian"),
        "rngarray-lfsr": lambda: RNGArray(n=4, rng="lfsr", bits=8, seed=3),
        "rngarray-xorshift": lambda: RNGArray(n=5, rng="xorshift", bits=6, seed=3),
        "lfsr": lambda: LFSR(width=24, seed=5, bits=7),
        "xorshift": lambda: Xorshift(seed=7, bits=8),
        "guided": lambda: MomentumGuided(Gaussian(seed=3), alpha=0.5, beta=0.5),
        "guided-pool": lambda: MomentumGuided(Pool(size=4099, seed=3), alpha=0.25, beta=1.0),
    }


SOURCES = _registry()
#: The entries whose z has zero mean and unit variance (the statistics tests run on these).
UNIT_VARIANCE = [n for n in SOURCES if n.startswith(("gaussian", "rademacher", "uniform", "pool"))]


def _has_kernel(name: str) -> bool:
    return SOURCES[name]().kernel_spec() is not None


def pytest_generate_tests(metafunc):
    if "source_name" in metafunc.fixturenames:
        metafunc.parametrize("source_name", list(SOURCES))
    if "unit_source_name" in metafunc.fixturenames:
        metafunc.parametrize("unit_source_name", UNIT_VARIANCE)
    if "kernel_source_name" in metafunc.fixturenames:
        metafunc.parametrize("kernel_source_name", [n for n in SOURCES if _has_kernel(n)])


@pytest.fixture(scope="session")
def make_source():
    """``make_source(name)``: a fresh source of the registry (unbound)."""
    return lambda name: SOURCES[name]()


@pytest.fixture(scope="session")
def record_classifier():
    """``record_classifier(key, lanes, steps, ...) -> (record, source)``: a recorded fixed-point
    run (``edgezo.hw.engine_cosim.record``) of a small quantized 16 -> 4 linear classifier,
    trained on the integers of hardware generator ``key`` (the engine tests' real run)."""

    def record_run(key, lanes, steps, estimator="sign", queries=3, per_channel=False, seed=0):
        import torch

        from edgezo import ZO
        from edgezo.fixedpoint import quantize_model, trainable_parameters
        from edgezo.hw.engine_cosim import RecordingFormat, record
        from edgezo.hw.zsources import z_source

        torch.manual_seed(seed)
        net = quantize_model(torch.nn.Linear(16, 4), activation_bits=None, per_channel=per_channel)
        x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
        src = z_source(key, lanes)
        opt = ZO(
            trainable_parameters(net),
            lr=3e-2,
            eps=1e-2,
            estimator=estimator,
            queries=queries,
            directions=src.directions,
            formats=RecordingFormat(z_bits=8),
        )
        loss = lambda: torch.nn.functional.cross_entropy(net(x), y)  # noqa: E731
        return record(opt, loss, steps, lanes), src

    return record_run
