"""The work of a clone, as units: one search per class, then shard-sized generation units."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.clone.dataset import ClassInfo
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class SearchUnit:
    cls: ClassInfo

    @property
    def id(self) -> str:
        return f"search:{self.cls.id}"


@dataclass(frozen=True)
class ShardUnit:
    cls: ClassInfo
    shard: str  # file name of the shard this unit writes
    start: int  # first sample index (within the class) of the shard
    count: int

    @property
    def id(self) -> str:
        return f"shard:{self.shard}"


class ClonePlan:
    """Every class gets ``images_per_class`` samples in ``ceil(images_per_class / shard_size)`` shards.

    Shard numbers derive from the class label, so a class's shards have the same names in every run.
    """

    def __init__(self, classes: list[ClassInfo], images_per_class: int, shard_size: int) -> None:
        if images_per_class < 1:
            raise ConfigError(f"images_per_class must be >= 1, got {images_per_class}")
        if shard_size < 1:
            raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
        if not classes:
            raise ConfigError("the dataset has no classes to clone")
        self.classes = classes
        self.images_per_class, self.shard_size = int(images_per_class), int(shard_size)
        self.shards_per_class = math.ceil(self.images_per_class / self.shard_size)

    def shards(self, cls: ClassInfo) -> list[ShardUnit]:
        out = []
        for part in range(self.shards_per_class):
            start = part * self.shard_size
            count = min(self.shard_size, self.images_per_class - start)
            out.append(ShardUnit(cls, f"shard-{cls.index * self.shards_per_class + part:06d}.tar", start, count))
        return out

    def all_shards(self) -> list[ShardUnit]:
        return [u for c in self.classes for u in self.shards(c)]

    @property
    def total_images(self) -> int:
        return len(self.classes) * self.images_per_class
