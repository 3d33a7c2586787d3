"""The shapes world: a procedural stand-in for ImageNet that every offline run, test and demo uses."""

from pipeline.shapes.world import Rendering, ShapesWorld

__all__ = ["Rendering", "ShapesWorld"]
