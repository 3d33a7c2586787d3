"""A generator that renders a procedural world (shapes, or the 1000-class glyphs) directly from prompts: the
whole core runs without a network."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from PIL import Image

from pipeline.errors import ConfigError
from pipeline.grammar import Grammar
from pipeline.seeding import rng_for
from pipeline.glyphs.world import GlyphWorld
from pipeline.shapes.world import ShapesWorld

WORLDS = {"shapes": ShapesWorld, "glyphs": GlyphWorld}


class ProceduralGenerator:
    """Reads what a prompt says about each grammar axis and draws it; unmentioned axes are drawn at random.

    Like a text-to-image model, it accepts free text: ``"a photo of a star"`` gives stars of random
    colour, size, pattern and background, each fixed by the sample's seed.
    """

    def __init__(self, grammar: Grammar, image_size: int = 32, world: str = "shapes", world_options: Mapping[str, Any] | None = None,
                 license: str | None = None) -> None:
        """``world_options``: the world's own settings (the glyphs world's ``family_size`` and ``occlusion``): the same
        as the dataset's, so the generator draws the world the inputs come from. ``license``: the images' licence, a
        Hub licence id (the clone's dataset card names it)."""
        self.license = license
        if world not in WORLDS:
            raise ConfigError(f"model.world must be one of {', '.join(WORLDS)}, got '{world}'")
        options = dict(world_options or {})
        self.world = WORLDS[world](grammar, image_size, **options)
        self.grammar = grammar
        self.model_id = f"procedural-{world}@{image_size}px" + "".join(f",{k}={v}" for k, v in sorted(options.items()))

    def attributes(self, prompt: str, seed: int) -> dict[str, str]:
        """The attributes the image of (prompt, seed) shows."""
        said = self.grammar.extract(prompt)
        rng = rng_for("procedural-unsaid", prompt, seed)
        attrs = {}
        for axis in self.grammar.axes:
            idx = said.get(axis.name)
            if idx is None:
                idx = int(rng.integers(len(axis)))
            attrs[axis.name] = axis.choices[idx]
        return attrs

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        if len(prompts) != len(seeds):
            raise ConfigError(f"generate: {len(prompts)} prompts but {len(seeds)} seeds")
        return [self.world.render(self.attributes(p, s), s).image for p, s in zip(prompts, seeds)]
