"""The README's command line is the real one: its synopsis is the parsers', its quoted output
is what the commands print (where that is deterministic), every command explains itself.

Regenerate the "Command line" block with
``python -c "import edgezo.cli as c; print(c.synopsis())"`` (indented by 4 spaces).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from edgezo import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    """The README text under the heading ``title`` (up to the next heading of any level)."""
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#)", README, flags=re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match[1]


def indented_block(text: str) -> list[str]:
    """The first block of 4-space-indented lines in ``text``, unindented."""
    match = re.search(r"((?:^    .*\n)+)", text, flags=re.M)
    assert match, "no indented block"
    return [line[4:] for line in match[1].splitlines()]


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser under it."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser] + [q for s in subs for p in s.choices.values() for q in all_parsers(p)]


def test_the_readme_synopsis_is_the_parsers():
    readme = indented_block(section("Command line"))
    generated = cli.synopsis().splitlines()
    assert readme == generated, (
        "README's 'Command line' block differs from the parsers; regenerate it with "
        'python -c "import edgezo.cli as c; print(c.synopsis())"'
    )


@pytest.mark.parametrize("flag", ["--checkpoint", "--save-every", "--bp-optimizer",
                                  "--rss-steps", "--no-progress"])  # fmt: skip
def test_flags_once_left_out_are_in_the_synopsis(flag):
    assert flag in "\n".join(indented_block(section("Command line")))


def test_edgezo_help_lists_every_command_of_the_synopsis(capsys):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    for line in indented_block(section("Command line")):
        command = line.split()[1]
        if command != "--version":
            assert re.search(rf"^    {command}\s+\S", listed, flags=re.M), command


PARSERS = {p.prog: p for p in all_parsers(cli.build_parser())}


@pytest.mark.parametrize("prog", list(PARSERS))
def test_every_command_and_subcommand_has_a_description_and_help(prog):
    parser = PARSERS[prog]
    assert parser.description, f"{prog} --help shows no description"
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{prog} {action.option_strings[0]} has no help"
    assert "``" not in parser.format_help(), f"{prog} --help shows reST markup"


def test_the_demo_table_in_the_readme_is_formatted_as_the_demo_prints_it():
    """The quoted table renders, through the demo's own formatter, to exactly its lines."""
    from edgezo.studies import demo

    block = re.search(r"```\n(method .*?)```", section("The demo"), flags=re.S)
    assert block, "README's demo section quotes no table"
    lines = block[1].splitlines()
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[2:]]
    assert [r[0] for r in rows] == list(demo.METHODS)
    per_step = {"mezo": 2, "pezo": 2, "qzo-ff 16w8a": 6, "pezo 16w8a": 6,
                "pezo 16w8a (onnxruntime)": 6}  # fmt: skip
    methods = {}
    for name, before, after, steps, forwards, seconds in rows:
        assert int(steps) == demo.FULL.steps and int(forwards) == per_step[name] * int(steps)
        methods[name] = {"before": float(before[:-1]) / 100, "after": float(after[:-1]) / 100,
                         "steps": int(steps), "forwards": int(forwards),
                         "seconds": float(seconds)}  # fmt: skip
    result = {
        "pretrain": {"cached": True, "seconds": 0.0, "clean_test_acc": 0.99},
        "adapted": {"names": ["head.weight", "head.bias"], "numel": 1290, "of": 206922},
        "config": {**demo.asdict(demo.FULL), "seed": 0, "quick": False},
        "methods": methods,
    }
    printed = demo.format_table(result).splitlines()
    start = printed.index(lines[0])
    assert printed[start : start + len(lines)] == lines


def test_the_readme_names_the_demo_command_and_seed_of_its_table():
    text = section("The demo")
    assert "`edgezo demo`, seed 0" in text and "--quick" in text


@pytest.mark.slow
def test_a_fresh_full_demo_prints_the_readme_table(tmp_path, monkeypatch):
    """``edgezo demo`` in an empty cache (about 2 minutes): the README's accuracies, exactly,
    with the README's 2 torch threads (the float sums of another thread count differ in
    their last bits, and so does the pretrained backbone)."""
    import torch

    from edgezo.studies import demo

    monkeypatch.setenv("EDGEZO_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # tests/conftest.py sets 1
    try:
        result = demo.run_demo(seed=0, progress=False, echo=None, out=None)
    finally:
        torch.set_num_threads(threads)
    block = re.search(r"```\n(method .*?)```", section("The demo"), flags=re.S)[1]
    quoted = [re.split(r"\s{2,}", line.strip())[:5] for line in block.splitlines()[2:]]
    printed = [
        [name, f"{100 * m['before']:.2f}%", f"{100 * m['after']:.2f}%", str(m["steps"]),
         str(m["forwards"])]
        for name, m in result["methods"].items()
    ]  # fmt: skip
    assert printed == quoted
