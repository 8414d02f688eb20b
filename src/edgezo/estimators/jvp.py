"""Forward gradient: the exact directional derivative by forward-mode AD."""

from __future__ import annotations

from .base import Closure, Estimate, Estimator, Probe


class JVP(Estimator):
    """Forward gradient (Baydin et al. 2022): the exact directional derivative ``grad . z``.

    Uses forward-mode AD on the same ``z`` as the other estimators, so it is the
    ``eps -> 0`` limit of :class:`Central` and a noise-free reference for it.

    Memory, beyond the forward's own activations (``benchmarks/jvp_memory.py``):

    * one tangent per trainable weight, alive during the forward: ``d`` values in the
      weights' dtype, i.e. one extra copy of the trainable weights. Each tensor's tangent
      is made in place and ``z`` is written into it a ``CHUNK`` at a time, so no other
      tensor of ``z``'s size exists;
    * while a tensor's tangent is made, PyTorch's forward-AD formula for the in-place
      op briefly holds one more tensor of that size (the largest trained tensor, once);
    * one tangent per activation the forward keeps alive, about the forward's own
      activation peak again (more with math attention, which the dual forward selects
      because the fused CPU kernels have no forward-mode AD).

    Measured (live tensors of one step over the trained weights' bytes): an MLP with
    1.6M weights and negligible activations 1.66x (1 + its largest tensor, 0.66; 2.32x
    before the tangents were written in place); the ViT-tiny-like model of
    ``step_overhead.py`` 2.28x, its forward alone 0.57x, and the SmallCNN 16.8x, its
    forward alone 8.0x: there the peak is in the dual forward (activation tangents),
    which writing the weights' tangents in place does not change. Time: a linear layer's tangent costs two
    more products than its forward (``x_t W^T + x W_t^T``), so a dual forward is up to
    3x a plain one and a step about 1.5x two forwards at best for dense layers; PyTorch
    offers no cheaper forward-mode AD for a closure over in-place parameters
    (``torch.func.jvp`` needs the module, and gives the same products).
    """

    name = "jvp"
    needs_float_weights = True
    perturbs_weights = False

    def forwards(self, queries: int) -> int:
        return queries

    def estimate(self, probe: Probe, closure: Closure, queries: int) -> Estimate:
        losses, coefficients = [], []
        for i in range(queries):
            loss, derivative = probe.directional(closure, i)
            losses.append(loss)
            coefficients.append(derivative)
        return Estimate(sum(losses) / len(losses), coefficients, losses)
