"""The papers' studies as recipes: ``edgezo run <study> [--quick]``.

Each study adapts a backbone pretrained here (backprop, cached) with every
method of :mod:`edgezo.experiments.methods` and writes, under its output
directory, ``results.json`` (every number), ``results.md`` (the tables, with
the paper's claims checked) and PNG figures.
"""
