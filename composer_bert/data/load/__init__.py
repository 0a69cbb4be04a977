"""Train time: the data: config, shard checks, the streaming dataset, masking and collators."""
