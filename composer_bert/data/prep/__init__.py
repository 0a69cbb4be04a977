"""Prep time: sources, tokenizer training, encoding, packing and writing shards (data_prep/)."""
