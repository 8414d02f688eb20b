"""Shared test settings."""

import torch

# The tests use tiny models: one thread avoids oversubscribing CI's two cores.
torch.set_num_threads(1)
