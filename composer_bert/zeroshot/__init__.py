"""Zero- and few-shot scoring of causal checkpoints on SuperGLUE tasks: each answer's log-likelihood after a
prompt (`prompts`), the settings (`config`), and the scorer and its report (`scoring`)."""
