"""scratchlm: pretrain small language models from scratch with the Hugging Face stack."""

__version__ = "0.1.0"

from . import models  # noqa: E402,F401  registers our model families with the Auto classes
