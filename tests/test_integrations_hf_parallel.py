"""ZOTrainer data parallel: two gloo ranks on CPU, as ``torchrun --nproc-per-node 2`` runs them.

The ranks are forked from this process (torch and transformers are already
imported: a fresh interpreter per rank would spend seconds importing them) and
given torchrun's environment; each builds its ``TrainingArguments`` and
``ZOTrainer`` as a script under torchrun would, trains, and saves what it saw.
The test compares them with independent references:

* the ranks' weights with each other (``torch.equal``: bit-identical replicas);
* the batches the ranks saw, concatenated, with one process's batches of twice
  the size (the Trainer's data sharding), and the weights and losses of that
  one-process run with the ranks' (float tolerance: the combined loss
  ``sum_r w_r L_r / sum_r w_r`` groups the same sum differently, a few ulps of
  the float64 loss; a weight moves by about ``lr * delta / eps`` per step);
* a causal LM with padded sequences of different lengths, so the ranks hold
  different numbers of label tokens: only weighting each rank by its token count
  (:meth:`ZOTrainer.shard_weight`) gives the one-process loss;
* the files each rank writes at a checkpoint (rank 0 the model, optimizer,
  scheduler and trainer state; every rank its RNG state), and a resume of two
  ranks from that checkpoint against the uninterrupted run (bit for bit).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: no hub access, ever

import json
import multiprocessing
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedModel,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from edgezo.distributed import DistributedZOError, free_port
from edgezo.integrations.adapters import peft_model
from edgezo.integrations.hf import ZOTrainer, _check_training_arguments

hf_logging.set_verbosity_error()

WORLD, PER_RANK, STEPS, SAVE_AT = 2, 4, 3, 2  # one checkpoint (step 2), resumed for step 3
VOCAB, LENGTH = 64, 12
#: Weights: a few ulps of the loss, divided by eps, times lr, per step. BERT's loss is float64;
#: the causal LM loss of transformers casts the logits to float32 (ulp ~ 5e-7 at 4.2).
TOLERANCE = {"bert": (1e-9, 1e-12), "lm": (1e-4, 1e-6)}  # (weights atol, losses rtol)


def classification_data(n: int = 32) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    return [
        {
            "input_ids": ids[i],
            "attention_mask": torch.ones(LENGTH, dtype=torch.long),
            "labels": labels[i],
        }
        for i in range(n)
    ]


def lm_data(n: int = 32) -> list[dict[str, torch.Tensor]]:
    """Sequences of 3 to LENGTH tokens, right-padded; padding is masked out of the loss (-100)."""
    g = torch.Generator().manual_seed(6)
    items = []
    for _ in range(n):
        length = int(torch.randint(3, LENGTH + 1, (1,), generator=g))
        ids = torch.zeros(LENGTH, dtype=torch.long)
        ids[:length] = torch.randint(1, VOCAB, (length,), generator=g)
        mask = (torch.arange(LENGTH) < length).long()
        items.append(
            {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
        )
    return items


def tiny_bert(seed: int) -> PreTrainedModel:
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=3,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config).double()


def tiny_opt_lora(seed: int) -> PreTrainedModel:
    config = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        ffn_dim=32,
        num_attention_heads=2,
        word_embed_proj_dim=16,
        max_position_embeddings=LENGTH,
    )
    torch.manual_seed(seed)
    return peft_model(OPTForCausalLM(config).double(), "lora", seed=seed, r=2)


class RecordingTrainer(ZOTrainer):
    """Keeps the batches it was given and the combined losses it logged."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.batches = [*getattr(self, "batches", []), {k: v.clone() for k, v in inputs.items()}]
        return super().training_step(model, inputs, num_items_in_batch)


def train(model, data, output_dir, batch, resume=None, callbacks=None, **overrides):
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch,
        max_steps=STEPS,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    args = TrainingArguments(**{**settings, **overrides})
    trainer = RecordingTrainer(
        model, args, train_dataset=data, zo="mezo", zo_kwargs={"eps": 1e-3}, callbacks=callbacks
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def summary(trainer: RecordingTrainer) -> dict:
    return {
        "state": {k: v.clone() for k, v in trainer.model.state_dict().items()},
        "batches": trainer.batches,
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "comm_bytes": trainer.dp.comm_bytes if trainer.dp is not None else None,
    }


# -- the ranks ------------------------------------------------------------------------------------
def recording_writes(rank: int, out: Path) -> list[str]:
    """Record the names of the files this rank writes with torch.save or save_pretrained."""
    written: list[str] = []
    save, save_pretrained = torch.save, PreTrainedModel.save_pretrained

    def recorded_save(obj, f, *args, **kwargs):
        written.append(Path(f).name)
        return save(obj, f, *args, **kwargs)

    def recorded_save_pretrained(self, directory, *args, **kwargs):
        written.append("save_pretrained")
        return save_pretrained(self, directory, *args, **kwargs)

    torch.save, PreTrainedModel.save_pretrained = recorded_save, recorded_save_pretrained
    return written


def scenario(out: Path, rank: int) -> None:
    """Train BERT (a checkpoint at step 2), then the LoRA LM, then resume BERT from step 2."""
    written = recording_writes(rank, out)
    straight = train(
        tiny_bert(0), classification_data(), out / "run", PER_RANK,
        save_strategy="steps", save_steps=SAVE_AT,
    )  # fmt: skip
    files = list(written)
    lm = train(tiny_opt_lora(0), lm_data(), out / "lm", PER_RANK)
    resumed = train(
        tiny_bert(1), classification_data(), out / "resumed", PER_RANK,
        resume=str(out / "run" / f"checkpoint-{SAVE_AT}"),
    )  # fmt: skip
    results = {"bert": summary(straight), "lm": summary(lm), "resumed": summary(resumed)}
    torch.save(
        {**results, "written": files, "refused": refusals(out, rank)}, out / f"rank-{rank}.pt"
    )


class ChangeRank1(TrainerCallback):
    """After step 1, rank 1 changes one weight outside the ZO step (replicas no longer agree)."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if args.process_index == 1 and state.global_step == 1:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] += 1.0


def refusals(out: Path, rank: int) -> dict[str, str]:
    """The errors of two runs that every rank must refuse: other models, diverged replicas."""
    errors = {}
    try:
        train(tiny_bert(rank), classification_data(), out / "other", PER_RANK)  # seeds differ
    except DistributedZOError as e:
        errors["other models"] = str(e)
    model, data = tiny_bert(0), classification_data()
    args = dict(max_steps=1, save_strategy="steps", save_steps=1, callbacks=[ChangeRank1()])
    try:
        train(model, data, out / "diverged", PER_RANK, **args)
    except DistributedZOError as e:
        errors["diverged"] = str(e)
    errors["saved"] = sorted(p.name for p in (out / "diverged").glob("checkpoint-*"))
    return errors


def rank_main(out: Path, rank: int, port: int) -> None:
    """One rank under torchrun's environment variables (in a forked process)."""
    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": WORLD, "MASTER_PORT": port}
    os.environ.update({k: str(v) for k, v in env.items()}, MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # the parent's single-process state
    try:
        scenario(out, rank)
    except BaseException as e:
        (out / f"rank-{rank}.error").write_text(f"{type(e).__name__}: {e}")
        raise


def launch(out: Path, timeout: float = 90) -> None:
    ctx = multiprocessing.get_context("fork")
    port = free_port()
    procs = [ctx.Process(target=rank_main, args=(out, r, port)) for r in range(WORLD)]
    for p in procs:
        p.start()
    deadline = time.time() + timeout
    for p in procs:
        p.join(max(deadline - time.time(), 0.1))
        if p.exitcode is None:
            p.kill()
            p.join()
    errors = {f.name: f.read_text() for f in out.glob("rank-*.error")}
    assert [p.exitcode for p in procs] == [0] * WORLD, json.dumps(errors)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel")
    launch(out)
    return [torch.load(out / f"rank-{r}.pt", weights_only=False) for r in range(WORLD)], out


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


# -- tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["bert", "lm"])
def test_replicas_are_bit_identical_and_only_scalars_were_sent(ranks, model):
    runs = [r[model] for r in ranks[0]]
    assert_same_state(runs[0]["state"], runs[1]["state"])
    assert runs[0]["losses"] == runs[1]["losses"]
    # central MeZO: two forwards per step, 24 bytes each (loss, tangent, weight as float64)
    assert [r["comm_bytes"] for r in runs] == [STEPS * 2 * 24] * WORLD


@pytest.mark.parametrize(
    ("model", "build", "data"),
    [("bert", tiny_bert, classification_data), ("lm", tiny_opt_lora, lm_data)],
)
def test_two_ranks_match_one_process_on_the_concatenated_batch(ranks, tmp_path, model, build, data):
    runs = [r[model] for r in ranks[0]]
    one = summary(train(build(0), data(), tmp_path, WORLD * PER_RANK))
    for step, batch in enumerate(one["batches"]):  # the Trainer's sharding: rank r, the r-th part
        for key, value in batch.items():
            parts = [r["batches"][step][key] for r in runs]
            assert torch.equal(torch.cat(parts), value), (step, key)
    initial = build(0).state_dict()
    assert not all(torch.equal(initial[k], v) for k, v in one["state"].items())  # it trained
    atol, rtol = TOLERANCE[model]
    for key, value in one["state"].items():
        torch.testing.assert_close(runs[0]["state"][key], value, rtol=0, atol=atol)
    assert runs[0]["losses"] == pytest.approx(one["losses"], rel=rtol)


def test_ranks_hold_different_token_counts_so_the_weighting_matters(ranks):
    """Equal weights would give the mean of the ranks' means, not the one-process loss."""
    runs = [r["lm"] for r in ranks[0]]
    counts = [[int(b["labels"][..., 1:].ne(-100).sum()) for b in r["batches"]] for r in runs]
    assert any(a != b for a, b in zip(*counts, strict=True))


def test_rank_0_writes_the_checkpoint_and_each_rank_its_rng_state(ranks):
    written = [r["written"] for r in ranks[0]]
    for_checkpoint = ["save_pretrained", "training_args.bin", "optimizer.pt", "scheduler.pt"]
    saved = sorted(c.name for c in (ranks[1] / "run").glob("checkpoint-*"))
    assert saved == [f"checkpoint-{SAVE_AT}", f"checkpoint-{STEPS}"]  # and at the end of training
    saves = len(saved)
    assert sorted(written[0]) == sorted((for_checkpoint + ["rng_state_0.pth"]) * saves)
    assert written[1] == ["rng_state_1.pth"] * saves
    checkpoint = ranks[1] / "run" / f"checkpoint-{SAVE_AT}"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()


def test_every_rank_refuses_other_models_and_a_checkpoint_of_diverged_replicas(ranks):
    for rank in ranks[0]:
        refused = rank["refused"]
        assert refused["other models"].startswith("The 2 ranks start from different models")
        assert "torch.manual_seed(s) before creating it" in refused["other models"]
        assert refused["diverged"].startswith("The replicas differ at step 1: rank 0 would")
        assert refused["saved"] == []  # no checkpoint of weights only one rank holds


def test_two_ranks_resume_bit_exactly(ranks):
    straight = ranks[0][0]["bert"]
    for rank in ranks[0]:
        resumed = rank["resumed"]
        assert_same_state(resumed["state"], straight["state"])
        assert resumed["losses"] == straight["losses"]  # steps 1-2 from the checkpoint's log


def tiny_gpt2(seed: int) -> PreTrainedModel:
    config = GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=LENGTH)
    config.bos_token_id = config.eos_token_id = 0
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).double()


@pytest.mark.parametrize(
    ("build", "data"),
    [(tiny_gpt2, lm_data), (tiny_opt_lora, lm_data), (tiny_bert, classification_data)],
)
def test_shard_weights_recombine_the_whole_batch_loss(tmp_path, build, data):
    """sum_r w_r L_r / sum_r w_r over two shards == the model's own loss on the whole batch.

    GPT-2 is the case the Trainer's label count gets wrong (its class name names no
    loss type); its loss shifts the labels all the same. OPT is wrapped by peft.
    """
    model = build(0).eval()
    trainer = ZOTrainer(model, TrainingArguments(str(tmp_path), use_cpu=True, report_to=[]))
    items = data()[:8]
    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    shards = [{k: v[:3] for k, v in batch.items()}, {k: v[3:] for k, v in batch.items()}]
    with torch.no_grad():
        whole = float(model(**batch).loss)
        losses = [float(model(**shard).loss) for shard in shards]
    weights = [trainer.shard_weight(shard) for shard in shards]
    combined = sum(w * loss for w, loss in zip(weights, losses, strict=True)) / sum(weights)
    assert combined == pytest.approx(whole, rel=1e-6)
    if build is not tiny_bert:  # by examples (3 and 5) instead of tokens: another number
        by_examples = (3 * losses[0] + 5 * losses[1]) / 8
        assert by_examples != pytest.approx(whole, rel=1e-4)
    else:
        assert weights == [3.0, 5.0]


def test_several_gpus_in_one_process_are_refused_with_advice():
    class Args:
        gradient_accumulation_steps, fp16, n_gpu = 1, False, 2

    with pytest.raises(ValueError, match=r"over 2 GPUs of one process .*torchrun --nproc-per-node"):
        _check_training_arguments(Args())


# -- the README's torchrun example -------------------------------------------------------------
README = Path(__file__).resolve().parent.parent / "README.md"


def readme_torchrun_example() -> tuple[str, list[str], str]:
    """The script of the README's LoRA/torchrun section, its command and the line it promises."""
    section = README.read_text().split("### LoRA, prefix tuning and `torchrun`", 1)[1]
    section = section.split("\n### ", 1)[0]
    code = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    command = re.search(r"`(torchrun [^`]+)` prints", section).group(1).split()
    promised = re.search(r"after the Trainer's log lines,\s+`([^`]+)`", section).group(1)
    return code, command, promised


@pytest.mark.slow
def test_readme_torchrun_example_prints_what_the_readme_says(tmp_path):
    """The documented command under real torchrun (two fresh interpreters: about a minute)."""
    code, command, promised = readme_torchrun_example()
    assert command[:3] == ["torchrun", "--nproc-per-node", "2"]
    (tmp_path / command[-1]).write_text(code)
    src = str(Path(__file__).resolve().parent.parent / "src")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", *command[1:]],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == promised
    assert (tmp_path / "out" / "checkpoint-30" / "adapter_model.safetensors").is_file()
