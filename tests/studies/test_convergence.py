"""edgezo.studies.convergence end to end on tiny cells (a 10-step ViT, a tiny keyword set): the
curves' steps and forward accounting, the final accuracy against the curve's last evaluation,
seeds that differ, the merged figure and tables, and bad configs refused."""

from __future__ import annotations

import json

import pytest

from edgezo.analysis.convergence import accuracy_at
from edgezo.analysis.tables import rebuild_report
from edgezo.data.keywords import Augment, KeywordConfig
from edgezo.studies import STUDIES, convergence
from edgezo.studies.audio import AudioData
from edgezo.studies.common import Study
from edgezo.studies.convergence import AudioCell, Config, Run, VisionCell
from edgezo.studies.seeds import run_seeds

#: 3 speakers (accents en-us, en-gb, en-gb-scotland), 3 clips of each of 6 words, 3 silences.
TINY_AUDIO = AudioData(
    keywords=KeywordConfig(
        speakers=3, clips_per_word=3, silence_per_speaker=3, keywords=("yes", "no"),
        unknown_words=("cat", "dog", "bed", "bird"), augment=Augment(noise_prob=0.0),
    ),
    targets=("en-gb-scotland",), held_out=("bed", "bird"), pretrain_steps=10, pretrain_batch=16,
)  # fmt: skip
TINY = Config(
    vision=tuple(VisionCell(regime=regime, pretrain_steps=10, train=48, val=16, test=32, batch=16,
                            runs={"backprop": Run(steps=4, lr=3e-3, budget=2, eval_every=2),
                                  "zo": Run(steps=6, lr=1e-2, budget=3, eval_every=3)})
                 for regime in ("lp", "vpt")),
    audio=AudioCell(data=TINY_AUDIO, group="en-gb-scotland", shots=1, val=1, test=1, batch=4,
                    runs={"backprop": Run(steps=4, lr=1e-3, budget=2, eval_every=2),
                          "zo": Run(steps=6, lr=1e-2, budget=3, eval_every=3)}),
    marks=(3, 6),
)  # fmt: skip
#: Forward passes per step, by hand: backprop one (and a backward), central ZO two.
PER_STEP = {"backprop": 1, "zo": 2}


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    out = tmp_path_factory.mktemp("convergence")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEZO_CACHE", str(out / "cache"))
        mp.setattr(convergence, "run", Study(TINY, TINY, convergence.run_config))  # tiny cells
        run_seeds("convergence", True, out, (0, 1), progress=False)
    return out / "convergence"


def rows(folder) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["rows"]


def test_every_cell_and_method_ran_with_its_steps_on_the_curve(merged):
    assert STUDIES["convergence"] == "convergence"
    runs = {(c.name, m): r for c in TINY.cells for m, r in c.runs.items()}
    seen = set()
    for r in rows(merged):
        seen.add((r["cell"], r["method"], r["seed"]))
        if r["method"] == "zero-shot":
            assert r["steps"] == r["forwards"] == 0 and "curve" not in r
            continue
        run = runs[r["cell"], r["method"]]
        assert r["steps"] == run.steps and r["budget"] == run.budget and r["lr"] == run.lr
        assert r["forwards"] == PER_STEP[r["method"]] * run.steps
        assert r["curve"]["step"] == list(range(0, run.steps + 1, run.eval_every))
        assert {len(v) for v in r["curve"].values()} == {len(r["curve"]["step"])}
    cells = {c.name for c in TINY.cells}
    assert len(cells) == 3
    assert seen == {(c, m, s) for c in cells for m in convergence.METHODS for s in (0, 1)}


def test_the_final_accuracy_is_the_curves_last_evaluation_and_step_0_is_zero_shot(merged):
    """The row's accuracy (:func:`~edgezo.studies.common.tested` on the returned model: argmax
    against the labels) and the loop's own evaluation at the last step agree; every curve
    starts at the untrained model, the cell's zero-shot row."""
    by_key = {(r["cell"], r["method"], r["seed"]): r for r in rows(merged)}
    for (cell, method, seed), r in by_key.items():
        if method == "zero-shot":
            continue
        assert r["accuracy"] == pytest.approx(r["curve"]["test"][-1], abs=1e-12)
        assert r["val_accuracy"] == pytest.approx(r["curve"]["val"][-1], abs=1e-12)
        zero = by_key[cell, "zero-shot", seed]
        assert r["curve"]["test"][0] == pytest.approx(zero["accuracy"], abs=1e-12)
        assert r["curve"]["val"][0] == pytest.approx(zero["val_accuracy"], abs=1e-12)
        assert accuracy_at(r, "budget") == r["curve"]["test"][r["curve"]["step"].index(r["budget"])]


def test_seeds_give_different_runs(merged):
    """The seed draws the data, the batches and the directions: the ZO runs' validation
    losses differ between seeds (accuracies of tiny sets may tie)."""
    losses = {}
    for r in rows(merged):
        if r["method"] == "zo":
            losses.setdefault(r["cell"], []).append(r["curve"]["val_loss"])
    for cell, (a, b) in losses.items():
        assert a != b, cell


def test_the_merged_folder_has_the_figure_and_the_tables(merged):
    assert (merged / "curves.png").read_bytes()[:4] == b"\x89PNG"
    md = (merged / "results.md").read_text()
    assert "![curves](curves.png)" in md and "| ZO - BP at the budgets (3 / 2 steps)" in md
    for seed in (0, 1):
        assert (merged / f"seed-{seed}" / "results.json").is_file()


@pytest.mark.parametrize(
    "run, message",
    [
        (Run(steps=10, lr=1e-3, budget=3, eval_every=2), "multiples of eval_every"),
        (Run(steps=10, lr=1e-3, budget=20, eval_every=5), "at most steps"),
        (Run(steps=10, lr=0.0, budget=5, eval_every=5), "must be > 0"),
    ],
)
def test_runs_off_the_curves_grid_are_refused(run, message):
    with pytest.raises(ValueError, match=message):
        Config(vision=(VisionCell(runs={"backprop": run, "zo": run}),), audio=None)


def test_cells_need_both_methods():
    with pytest.raises(ValueError, match="runs must name backprop and zo"):
        Config(vision=(), audio=AudioCell(runs={"zo": Run(10, 1e-3, 5, 5)}))


def test_two_cells_of_one_name_are_refused():
    with pytest.raises(ValueError, match="its own name"):
        Config(vision=(VisionCell(), VisionCell(batch=32)), audio=None)


def test_the_full_run_has_the_probing_prompt_and_keyword_cells():
    names = [c.name for c in convergence.FULL.cells]
    assert names == [
        "cross-domain vit mnist->digits lp",
        "cross-domain vit mnist->digits vpt",
        "kws-personalize crnn flite clean ft",
    ]


def test_a_folder_keeping_only_the_json_gets_its_tables_and_curves_back(merged, tmp_path):
    """What ``results/`` keeps: ``edgezo report`` remakes results.md and curves.png from it."""
    (tmp_path / "results.json").write_text((merged / "results.json").read_text())
    data = json.loads((tmp_path / "results.json").read_text())
    assert rebuild_report(tmp_path, data) == (merged / "results.md").read_text()
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
