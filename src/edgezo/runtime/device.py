"""DeviceFormat: QZO-FF's integer step run by the compiled C99 device code, on the same integers.

:class:`DeviceFormat` is :class:`~edgezo.formats.FixedPointFormat` held to its compiled
executor (:mod:`.step`): perturbed reads and updates run in ``c/edgezo_step.c``
(compiled once into the cache, see :mod:`.clib`) on the very tensors ``ZO`` trains.
FixedPointFormat itself takes that executor whenever it can and falls back to Python;
DeviceFormat raises instead (also under ``EDGEZO_KERNELS=off``), so a configuration meant
for the device fails early. The numbers are bit-identical to the Python path
(``tests/test_runtime_device.py``), and ``config()`` is FixedPointFormat's, so
checkpoints move between the two.

Supported: sources :class:`~edgezo.directions.Pool` (not ``scale='perturbation'``),
:class:`~edgezo.directions.LFSR`, :class:`~edgezo.directions.Xorshift`,
:class:`~edgezo.directions.RNGArray`, :class:`~edgezo.directions.Rademacher`,
:class:`~edgezo.directions.Gaussian` and :class:`~edgezo.directions.Uniform`; estimators
central, forward and sign (any ``m``), sparse masks, momentum by replay, weight decay;
int8 and int16 weights.
"""

from __future__ import annotations

from ..formats.fixedpoint import FixedPointFormat
from .clib import BUILD, CompilerMissing
from .step import DeviceRead, compiled_step
from .zsource import UnsupportedSource

__all__ = ["BUILD", "CompilerMissing", "DeviceFormat", "DeviceRead", "UnsupportedSource"]


class DeviceFormat(FixedPointFormat):
    """:class:`~edgezo.formats.FixedPointFormat` executed by the compiled C99 device step.

    Same arguments and numbers as FixedPointFormat (its ``config()`` too). Raises
    :class:`CompilerMissing` when bound without a C compiler, and
    :class:`UnsupportedSource` for a direction source the integer step cannot
    reproduce (MomentumGuided; a float factor per perturbation: ``scale='perturbation'``).

    Example (needs a C compiler, so not run as a doctest)::

        from edgezo import ZO
        from edgezo.directions import Pool
        from edgezo.fixedpoint import quantize_model, trainable_parameters
        net = quantize_model(torch.nn.Linear(64, 4), activation_bits=None)
        opt = ZO(trainable_parameters(net), lr=1e-2, eps=1e-2, estimator="sign", queries=3,
                 directions=Pool(size=1021, seed=0), formats=DeviceFormat())
        opt.formats[0].state_bytes()  # what the device keeps beyond inference
    """

    name = "fixed point (C)"

    def executor_of(self) -> tuple:
        """Always the compiled step: raise :class:`CompilerMissing` or
        :class:`UnsupportedSource` rather than fall back to Python."""
        return compiled_step(self, required=True)

    def state_bytes(self, terms: int | None = None) -> int:
        """Bytes the device keeps beyond inference (see ``ez_state_bytes`` in the header).

        ``terms``: cursors held at once (default: the optimizer's queries, at least 1).
        """
        terms = max(1, self.directions.queries) if terms is None else terms
        return self.step.state_bytes(terms)
