"""Every path of a clone's output folder, in one place.

::

    <output_dir>/
      shard-000000.tar …         WebDataset shards (keys <class>_<index>)
      manifest/shard-000000.json one record per committed shard (the truth a resume reads)
      manifest.json              all records in shard order, class labels (a convenience view)
      searches/<class>.json      a class's search result; searches/<class>.renders.tar its reusable renders
      contexts.json              clone.propose=inputs: the context prior and each class's estimate (pipeline.clone.context_prior)
      run.json                   the settings the samples depend on (pipeline.clone.identity)
      clone.log                  one JSON event per line, every run appended
      summary.json               the summary of the latest run
      README.md                  the dataset card (pipeline.clone.card): datasets.load_dataset(folder) reads it
      _info.json                 the shards as timm's WebDataset reader lists them (split "train")

``Layout()`` gives names relative to the output folder (what :class:`~pipeline.storage.Storage` takes);
``Layout(folder)`` the same names under a local folder, for scripts and tests that read a clone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHARD_PREFIX, SHARD_SUFFIX = "shard-", ".tar"


@dataclass(frozen=True)
class Layout:
    root: str = ""

    def _at(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if self.root else rel

    # ------------------------------------------------------------------ files
    @property
    def run_json(self) -> str:
        return self._at("run.json")

    @property
    def log(self) -> str:
        return self._at("clone.log")

    @property
    def manifest(self) -> str:
        return self._at("manifest.json")

    @property
    def summary(self) -> str:
        return self._at("summary.json")

    @property
    def contexts(self) -> str:
        return self._at("contexts.json")

    @property
    def card(self) -> str:
        return self._at("README.md")

    @property
    def timm_info(self) -> str:
        return self._at("_info.json")

    # ------------------------------------------------------------------ folders and per-unit files
    @property
    def records(self) -> str:
        return self._at("manifest")

    @property
    def searches(self) -> str:
        return self._at("searches")

    def record(self, shard: str) -> str:
        return self._at(f"manifest/{shard.rsplit('.', 1)[0]}.json")

    def search(self, class_id: str) -> str:
        return self._at(f"searches/{class_id}.json")

    def renders(self, class_id: str) -> str:
        return self._at(f"searches/{class_id}.renders.tar")

    @staticmethod
    def shard_name(number: int) -> str:
        return f"{SHARD_PREFIX}{number:06d}{SHARD_SUFFIX}"

    def shard_files(self) -> list[str]:
        """The shard files of a local clone folder, in name order."""
        return sorted(str(p) for p in Path(self.root or ".").glob(f"{SHARD_PREFIX}*{SHARD_SUFFIX}"))


LAYOUT = Layout()  # names relative to the output folder
