"""Text-to-image backends. Every backend implements :class:`Generator`."""

from pipeline.generators.base import Generator

__all__ = ["Generator"]
