"""rldf-pipeline: clone image datasets with diffusion models steered by RLDF."""

__version__ = "0.1.0"
