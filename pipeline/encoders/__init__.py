"""Image encoders: what turns an image into an embedding, feature maps, a segmentation or an encoding."""

from pipeline.encoders.base import ImageEncoder, Segmenter, SemanticEncoder, to_array

__all__ = ["ImageEncoder", "Segmenter", "SemanticEncoder", "to_array"]
