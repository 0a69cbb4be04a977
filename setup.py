"""Install composer-bert: `pip install -e .[test]`."""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("composer_bert/version.py").read_text(), version)

install_requires = [
    # Two supported stacks (docs/development.md "Supported stacks"): the pinned one that Composer 0.32.1's own pins give
    # (torch 2.7.0, transformers 4.x; `make install`, requirements/pinned.txt), and a current one (torch 2.14,
    # transformers 5; `make install-current`, requirements/current.txt) where Composer and streaming are
    # installed --no-deps because their torch<2.7.1 / transformers<5 pins would downgrade it. So our own
    # bounds are only what our code needs; a plain `pip install` still resolves to the pinned stack.
    "torch>=2.6",
    "mosaicml==0.32.1",
    "mosaicml-streaming==0.13.0",
    "transformers>=4.40,<6",
    "tokenizers>=0.19",
    "datasets>=2.19",
    "omegaconf>=2.3,<3",
    "numpy<2.2",
    "safetensors",
    "matplotlib",
    "tqdm",
    "xxhash>=3,<4",  # shard hashes (data_prep/verify_shards.py); the bounds mosaicml-streaming already requires
]

extras = {
    "test": ["pytest>=8", "pytest-timeout>=2.1", "pytest-xdist>=3.5", "ruff==0.17.6", "scipy", "scikit-learn", "moto[server]>=5.1,<6"],
    "wandb": ["wandb>=0.24,<0.29"],  # kept for old install lines; `.[loggers]` has every tracker
    # Experiment trackers for `loggers:` (W&B, MLflow, TensorBoard) and NVML's energy counter. Bounds: Composer
    # 0.32.1's WandBLogger calls Run.get_url (gone in wandb 0.29), its MLFlowLogger targets MLflow 2, and
    # wandb from 0.24 accepts the protobuf 6 that google-api-core (via mosaicml-streaming) requires.
    # mlflow-skinny is MLflow's tracking client without the server and UI, enough for Composer's logger.
    # Tested: wandb 0.28.2, mlflow-skinny 2.22.5, tensorboard 2.21.0, nvidia-ml-py 13.
    "loggers": [
        "wandb>=0.24,<0.29",
        "mlflow-skinny>=2.14.1,<3",
        "tensorboard>=2.9.1,<3",
        "nvidia-ml-py>=12",
    ],
    # lm-evaluation-harness, the reference the zero-shot scorer is cross-checked against (tests/zeroshot/); the
    # scorer itself does not need it. Its Hugging Face backend imports accelerate; peft (its `hf` extra) is left
    # out: transformers imports peft when present, and peft warns on every model load under transformers < 5.6.
    "crosscheck": ["lm-eval==0.4.13", "accelerate>=0.26"],
}

setup(
    name="composer-bert",
    version=version["__version__"],
    description="Composer recipes that train masked-LM encoders (BERT) and causal LMs (GPT/Llama-style) on a fixed compute budget, then finetune, generate and export them.",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["composer_bert", "composer_bert.*"]),
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
)
