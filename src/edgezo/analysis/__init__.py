"""Analysis: memory accounting (:mod:`edgezo.analysis.memory`), landscapes, plots and reports.

Import the modules directly (``from edgezo.analysis.memory import memory_table``);
this package file imports nothing, so each study stays independent and cheap to load.
"""
