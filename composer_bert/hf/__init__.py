"""Hugging Face export: `export.py` writes and reads export directories; `configuration_composer_bert.py` and
`modeling_composer_bert.py` are the `transformers` classes that exports carry as remote code."""
