"""edgezo.models.portable: the correctly rounded square root, Adam with it against torch's, and
portable runs that give the same bytes on other (emulated) CPUs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgezo.models import portable as P
from edgezo.studies import demo

FLOAT32 = st.floats(min_value=0.0, allow_infinity=True, allow_nan=False, width=32)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.integers(1, 4096), elements=FLOAT32))
def test_exact_sqrt_is_the_correctly_rounded_root(x):
    """numpy's float32 sqrt is the hardware's IEEE root (correctly rounded): the reference."""
    got = P.exact_sqrt(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, np.sqrt(x))


def test_exact_sqrt_is_exact_across_float32s_magnitudes():
    """200,000 non-negative float32s drawn uniformly by bit pattern: subnormals to 3.4e38."""
    g = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 0x7F800000, (200_000,), generator=g, dtype=torch.int32)
    x = bits.view(torch.float32)
    assert x.min() < 1e-38 and x.max() > 1e38
    np.testing.assert_array_equal(P.exact_sqrt(x).numpy(), np.sqrt(x.numpy()))
    with pytest.raises(TypeError, match="float32"):
        P.exact_sqrt(x.double())


def adam_steps(make, params, grads) -> list[torch.Tensor]:
    opt = make(params)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=len(grads))
    for g in grads:
        for p, gp in zip(params, g, strict=True):
            p.grad = gp.clone()
        opt.step()
        sched.step()
    return [p.detach().clone() for p in params]


def problem(seed: int) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(37, generator=g), torch.randn(5, 3, generator=g)]
    grads = [[torch.randn(p.shape, generator=g) * 10.0**k for p in params] for k in range(-3, 3)]
    return params, grads


@pytest.mark.parametrize("seed", [0, 1])
def test_adam_is_torchs_adam_step_for_step(seed, monkeypatch):
    """With torch's square root made exact, torch.optim.Adam (single-tensor) and ours agree bit
    for bit over a one-cycle schedule (which also cycles beta1): the same formula in the same
    order. With torch's own square root they agree to float32 rounding."""
    params, grads = problem(seed)
    ours = adam_steps(lambda ps: P.Adam(ps, lr=1e-2), [p.clone() for p in params], grads)
    torch_adam = lambda ps: torch.optim.Adam(ps, lr=1e-2, foreach=False)  # noqa: E731
    theirs = adam_steps(torch_adam, [p.clone() for p in params], grads)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    sqrt = torch.Tensor.sqrt
    monkeypatch.setattr(torch.Tensor, "sqrt", lambda t: sqrt(t.double()).float())
    exact = adam_steps(torch_adam, [p.clone() for p in params], grads)
    for a, b in zip(ours, exact, strict=True):
        assert torch.equal(a, b)


def test_adam_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="betas"):
        P.Adam([torch.zeros(2, requires_grad=True)], betas=(0.9, 1.0))


def test_pinning_needs_a_process_started_portable():
    with pytest.raises(RuntimeError, match="run_portable"):
        P.pin_kernels()  # this test process chose its kernels already


def test_a_failing_portable_run_says_so():
    with pytest.raises(RuntimeError, match="portable run of edgezo.studies.demo:nothing failed"):
        P.run_portable("edgezo.studies.demo:nothing", {})


def pretrain_digest(steps: int, prefix=(), pinned=True, env=None) -> str:
    kwargs = demo.pretrain_arguments(demo.DemoConfig(pretrain_steps=steps))
    return P.state_digest(P.run_portable(demo.PRETRAIN_TARGET, kwargs, prefix=prefix,
                                         pinned=pinned, env=env))  # fmt: skip


def qemu(cpu: str) -> tuple[str, ...]:
    """The command prefix that runs a process on an emulated ``cpu`` (Debian ``qemu-user``)."""
    if shutil.which("qemu-x86_64") is None:
        pytest.fail("needs qemu-x86_64 (Debian: apt-get install qemu-user; `make test` does)")
    return ("qemu-x86_64", "-cpu", cpu)


@pytest.mark.slow  # the studies' backbones check the same pinning in the default suite
def test_the_demos_pretraining_is_the_same_on_an_emulated_cpu_without_avx():
    """Nehalem has no AVX: MKL, aten and glibc take other code paths than on this CPU, yet the
    portable run's bytes are the same (three steps: about 30 s, most of it loading torch)."""
    here = pretrain_digest(3)
    assert pretrain_digest(3, prefix=qemu("Nehalem")) == here
    assert pretrain_digest(3, env={"OMP_NUM_THREADS": "2"}) == here  # pinned to one thread


@pytest.mark.slow  # emulated AVX2 runs torch at about a hundredth of its speed: minutes
def test_pinning_is_what_makes_the_bytes_portable():
    """Unpinned, an emulated CPU without AVX takes other kernels and gives other bytes than
    this (vector) CPU; pinned, an emulated AVX2 + FMA CPU gives this CPU's bytes."""
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.fail("run on a CPU with AVX2 or AVX-512: this one takes the emulated one's paths")
    steps, unpinned = 20, {"OMP_NUM_THREADS": "1"}
    assert pretrain_digest(steps, pinned=False, env=unpinned) != pretrain_digest(
        steps, prefix=qemu("Nehalem"), pinned=False, env=unpinned
    )
    assert pretrain_digest(steps) == pretrain_digest(steps, prefix=qemu("Haswell"))


class ViTAndResNet(torch.nn.Module):
    """The studies' ViT and SmallResNet side by side (their logits summed): one portable run,
    on the emulated CPU one torch start, covers both."""

    def __init__(self) -> None:
        from edgezo.studies.common import _build

        super().__init__()
        self.vit, self.resnet = _build("vit", 10), _build("resnet", 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x) + self.resnet(x)


def test_a_studys_backbones_are_the_same_on_an_emulated_cpu_without_avx():
    """The studies' backbones (edgezo.models.pretrain.pretrained) train in the same portable
    process: a ViT (softmax, GELU, LayerNorm) and a ResNet (batch norm in training) give
    the same bytes on Nehalem as here, and other bytes with another seed (the check can fail)."""
    from edgezo.data.images import as_input, load_images
    from edgezo.models.pretrain import train_portable

    x, y = load_images("mnist", "train")
    train = (as_input(x[:48]), y[:48])
    training = {"steps": 3, "batch_size": 16, "lr": 1e-3, "seed": 0, "optimizer": "adam",
                "progress": False}  # fmt: skip
    here, accuracy = train_portable(ViTAndResNet, train, training)
    there, accuracy_there = train_portable(ViTAndResNet, train, training, prefix=qemu("Nehalem"))
    assert P.state_digest(here) == P.state_digest(there) and accuracy == accuracy_there
    other, _ = train_portable(ViTAndResNet, train, {**training, "seed": 1})
    assert P.state_digest(other) != P.state_digest(here)
