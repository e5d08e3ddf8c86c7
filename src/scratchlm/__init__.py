"""scratchlm: pretrain small language models from scratch with the Hugging Face stack."""

__version__ = "0.1.0"
