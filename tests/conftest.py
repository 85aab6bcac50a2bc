"""Suite-wide settings: one intra-op thread keeps the many tiny tests fast and timing predictable."""

import torch

torch.set_num_threads(1)
