"""Bridges to other training frameworks; each module imports its framework on use.

* :mod:`edgezo.integrations.hf`: Hugging Face ``transformers`` (``ZOTrainer``,
  data parallel under ``torchrun``, ``load_minilm``); needs the ``hf`` extra
  (``pip install 'edgezo[hf]'``).
* :mod:`edgezo.integrations.adapters`: LoRA and prefix tuning through ``peft``
  (``peft_model``), so ZO trains the adapter only; the same extra.
* :mod:`edgezo.integrations.arguments`: ``ZOTrainingArguments`` (MeZO's settings)
  and the warnings about the Trainer settings ZO ignores.
* :mod:`edgezo.integrations.prompts`: MeZO-style prompt fine-tuning (template,
  label words, ``PromptDataset``, ``LabelWordLoss``) for masked and causal LMs.
* :mod:`edgezo.integrations.probe`: linear probing of a frozen MiniLM (``SentenceProbe``,
  sentence vectors computed once, ``quantize_probe`` for 16w8a).
"""
