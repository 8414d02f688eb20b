"""The compiled engine (yosys CXXRTL + g++) against Amaranth's simulator and the Python integers.

Amaranth's simulator is the reference: on short recorded runs the compiled replay must
give the same block RAM after every step, the same streamed rows and the same cycle
counts, and both must equal the fixed-point path (``mismatches == []``). Each design is
compiled once (10-20 s on a quiet core, cached by the hash of its C++), so the default run
compiles two generators (LFSR with sign-2-SPSA, the PeZO array with central SPSA, both
with per-channel scales); every generator is ``-m slow``. Needs yosys, Debian's
``yosys-dev`` (CXXRTL's headers) and ``g++``: without them these tests FAIL with the
install command.
"""

import numpy as np
import pytest

pytest.importorskip("amaranth", reason="edgezo.hw needs the 'hw' extra")

from edgezo.hw.engine import Engine
from edgezo.hw.engine_cosim import Step, mismatches, replay
from edgezo.hw.engine_cxxrtl import (
    CompilerMissing,
    CxxrtlMissing,
    build_engine,
    cxx_compiler,
    cxxrtl_include,
    replay_compiled,
    run_words,
)
from edgezo.hw.zsources import KEYS, z_source


@pytest.fixture(scope="module", autouse=True)
def toolchain():
    try:
        return cxxrtl_include(), cxx_compiler()
    except (CxxrtlMissing, CompilerMissing) as err:
        pytest.fail(str(err), pytrace=False)


def _both_simulators_agree(record, key, estimator="sign", queries=2, lanes=2, steps=3):
    rec, src = record(key, lanes, steps, estimator, queries, per_channel=True)
    assert len(rec.config.groups) == 5  # 4 output channels + the bias
    reference = replay(Engine(rec.config, src), rec)
    compiled = replay_compiled(Engine(rec.config, src), rec)
    assert compiled.cycles == reference.cycles
    assert len(compiled.memory) == len(compiled.streamed) == steps
    for ours, theirs in zip(compiled.memory, reference.memory, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(compiled.streamed, reference.streamed, strict=True):
        assert ours.size == 2 * queries * len(rec.config.init)
        np.testing.assert_array_equal(ours, theirs)
    assert mismatches(rec, compiled) == mismatches(rec, reference) == []
    init = np.array(rec.config.init)
    assert all((s.after != init).any() for s in rec.steps)  # the run does train
    return rec, compiled


def test_compiled_equals_amaranth_lfsr_sign_per_channel(record_classifier):
    rec, run = _both_simulators_agree(record_classifier, "lfsr")
    assert run.timing["run_s"] > 0
    again = build_engine(Engine(rec.config, z_source("lfsr", 2)))  # the same design: cached
    assert again.seconds is None and again.path.exists()


def test_compiled_equals_amaranth_central_coefficients(record_classifier):
    rec, _ = _both_simulators_agree(record_classifier, "pezo-array", estimator="central", queries=1)
    assert len({tuple(s.upd) for s in rec.steps}) > 1  # the coefficient changes every step


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_compiled_equals_amaranth_every_generator(record_classifier, key):
    _both_simulators_agree(record_classifier, key, queries=3, lanes=4)


def test_compiled_replay_detects_a_wrong_recording(record_classifier):
    """A corrupted loss changes a sign, so the engine's memory must differ from the recording."""
    rec, src = record_classifier("lfsr", 2, 2, "sign", 2, per_channel=True)
    rec.steps[1].losses[0], rec.steps[1].losses[1] = rec.steps[1].losses[1], rec.steps[1].losses[0]
    problems = mismatches(rec, replay_compiled(Engine(rec.config, src), rec))
    assert len(problems) == 1 and problems[0].startswith("step 1: ")


def test_run_words_refuses_a_step_that_does_not_fit(record_classifier):
    rec, _ = record_classifier("lfsr", 2, 1, "sign", 2, per_channel=True)
    short = Step([1.0, 2.0], [], [1, -1], rec.steps[0].upd, rec.steps[0].after)
    with pytest.raises(ValueError, match="needs 4 losses, 2 numerators"):
        run_words(rec.config, [short], True)


def test_missing_headers_and_compiler_name_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEZO_CXXRTL_INCLUDE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no yosys-config, yosys or compiler
    with pytest.raises(CxxrtlMissing, match="apt-get install -y yosys-dev"):
        cxxrtl_include()
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(CompilerMissing, match="apt-get install -y g\\+\\+"):
        cxx_compiler()
