"""Bridges to other training frameworks; each module imports its framework on use.

* :mod:`edgezo.integrations.hf`: Hugging Face ``transformers`` (``ZOTrainer``,
  ``load_minilm``); needs the ``hf`` extra (``pip install 'edgezo[hf]'``).
"""
