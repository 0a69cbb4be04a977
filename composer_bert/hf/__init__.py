"""Hugging Face export: `export.py` writes export directories and `load.py` reads them back;
`configuration_composer_bert.py` and `modeling_composer_bert.py` are the `transformers` classes that exports
carry as remote code."""
