"""Pretraining: the recipe's config, the Trainer wiring, training controls, resume and the run report."""
