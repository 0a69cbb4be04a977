"""composer-bert: train the best masked-LM encoder (BERT) or causal LM (GPT/Llama-style) a fixed compute budget can
buy with MosaicML Composer, then finetune, evaluate, generate and export it."""

from composer_bert.version import __version__

__all__ = ["__version__"]
