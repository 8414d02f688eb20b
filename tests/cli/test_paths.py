"""Output and input paths of every ``edgezo`` command are checked before any work.

An unwritable ``--out`` or ``--json`` used to fail after the whole run (naming a
temporary file); missing directories were created without a word; a ``--results``
with no results gave an empty report and exit code 0.
"""

from __future__ import annotations

import json

import pytest

from edgezo import cli

#: A directory nobody can create files in, not even root.
UNWRITABLE = "/proc/edgezo-test"


@pytest.fixture
def no_work(monkeypatch):
    """Make every command's implementation fail the test if it is reached."""
    import edgezo.analysis.report
    import edgezo.studies
    import edgezo.studies.demo
    import edgezo.studies.landscape

    def reached(*args, **kwargs):
        raise AssertionError("the command started its work before checking its paths")

    monkeypatch.setattr(edgezo.studies.demo, "run_demo", reached)
    monkeypatch.setattr(edgezo.studies, "run_study", reached)
    monkeypatch.setattr(edgezo.studies.landscape, "run", reached)
    monkeypatch.setattr(edgezo.analysis.report, "build_report", reached)


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--quick", "--out", f"{UNWRITABLE}/demo"],
        ["demo", "--quick", "--json", f"{UNWRITABLE}/result.json"],
        ["run", "ood", "--quick", "--out", UNWRITABLE],
        ["memory", "cnn", "--out", UNWRITABLE],
        ["landscape", "--quick", "--out", UNWRITABLE],
        ["report", "--results", ".", "--out", UNWRITABLE],
        ["hw", "report", "--out", UNWRITABLE],
    ],
    ids=["demo-out", "demo-json", "run", "memory", "landscape", "report", "hw"],
)
def test_an_unwritable_output_fails_before_the_work(argv, no_work, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "/proc" in err and "not writable" in err and "Traceback" not in err
    assert ".tmp" not in err  # names the user's path, not a temporary file


def test_a_file_in_the_way_is_named(tmp_path, no_work, capsys):
    blocker = tmp_path / "plain.txt"
    blocker.write_text("x")
    assert cli.main(["demo", "--quick", "--out", str(blocker / "demo")]) == 2
    assert f"{blocker} is a file, not a directory" in capsys.readouterr().err
    assert cli.main(["demo", "--quick", "--json", str(tmp_path)]) == 2
    assert "is a directory; give a file name" in capsys.readouterr().err


def test_missing_output_directories_are_created_and_reported(tmp_path, monkeypatch, capsys):
    import edgezo.studies.demo

    seen = {}

    def fake_demo(**kwargs):
        seen.update(kwargs)
        return {"config": {"seed": kwargs["seed"]}, "methods": {}, "table": "t"}

    monkeypatch.setattr(edgezo.studies.demo, "run_demo", fake_demo)
    out, result = tmp_path / "a" / "b" / "demo", tmp_path / "c" / "result.json"
    argv = ["demo", "--quick", "--out", str(out), "--json", str(result), "--seeds", "0"]
    assert cli.main(argv) == 0
    one = json.loads(result.read_text())
    assert out.is_dir() and one["config"] == {"seed": 0} and "table" not in one
    record = json.loads((out / "demo.json").read_text())
    assert record["seeds"] == [0] and record["runs"]["0"] == one and "provenance" in record
    err = capsys.readouterr().err
    assert f"created directory {out}" in err and f"created directory {result.parent}" in err
    written = (out / "demo.json").read_text()
    assert cli.main(["demo", "--quick", "--out", str(out)]) == 0  # exists: nothing to say
    assert "created" not in capsys.readouterr().err
    assert (out / "demo.json").read_text() == written  # without --seeds: the record is kept


def test_report_refuses_results_that_are_not_there(tmp_path, no_work, capsys):
    assert cli.main(["report", "--results", str(tmp_path / "nonexistent")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["report", "--results", str(tmp_path)]) == 2  # exists, holds no results
    err = capsys.readouterr().err
    assert f"no results under {tmp_path}" in err and "--run-quick" in err
    assert cli.main(["report", "--results", f"{UNWRITABLE}/r", "--run-quick"]) == 2
    assert "not writable" in capsys.readouterr().err
