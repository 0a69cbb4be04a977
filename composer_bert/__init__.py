"""composer-bert: train the best BERT a fixed compute budget can buy, with MosaicML Composer."""

from composer_bert.version import __version__

__all__ = ["__version__"]
