"""Builds the objects of one search from configuration (what the Hydra entry points call)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from pipeline.config import EnvSettings
from pipeline.encoders.base import ImageEncoder, SemanticEncoder
from pipeline.env import GridEnv, StateEvaluator
from pipeline.errors import ConfigError
from pipeline.generators.base import Generator
from pipeline.grammar import Encoding, Grammar
from pipeline.images import noise_image
from pipeline.reading import InputReading, read_inputs
from pipeline.rendering import Renderer, RenderPool
from pipeline.rewards import CompositeReward, RewardModels
from pipeline.seeding import derive_seed


@dataclass
class SearchStack:
    """Everything that outlives one search: on a cluster, what a worker holds for its whole life."""

    grammar: Grammar  # the search space: the full grammar restricted by env.fix / env.exclude
    full_grammar: Grammar  # what the semantic encoder reads and the generator understands
    generator: Generator
    image_encoder: ImageEncoder
    reward: CompositeReward
    semantic_encoder: SemanticEncoder
    search: Any
    env: EnvSettings  # the MDP's settings, typed (conf/env/default.yaml)
    models: RewardModels | None = None  # what built the reward and the semantic encoder (a group's context reader too)
    _by_group: dict[str, tuple[Grammar, Grammar]] = field(default_factory=dict, repr=False)
    _readers: dict[str, tuple[SemanticEncoder, Grammar]] = field(default_factory=dict, repr=False)

    def grammars(self, group: str | None = None, class_choices: Sequence[str] | None = None) -> tuple[Grammar, Grammar]:
        """(search grammar, full grammar) of one class: the class group's vocabulary where the grammar has
        groups, then env.fix / env.exclude, then the class axis cut to ``class_choices`` (a search's top-k
        candidate classes) where given. Every prompt of both is a prompt of :attr:`full_grammar`'s language."""
        if group is None or not self.full_grammar.groups:
            grammar, full = self.grammar, self.full_grammar
        else:
            if group not in self._by_group:  # built once per group: the class axis may hold 1000 choices
                full = self.full_grammar.for_group(group)
                self._by_group[group] = (full.restrict(self.env.fix, self.env.exclude), full)
            grammar, full = self._by_group[group]
        if class_choices is not None:
            grammar = grammar.with_choices(grammar.class_axis, class_choices)
        return grammar, full

    def context_reader(self, group: str | None = None, group_classes: Sequence[str] | None = None) -> tuple[SemanticEncoder, Grammar]:
        """The semantic encoder and the grammar a class's context is read over (``clone.propose=inputs``): the stack's
        own without class groups; else one per group over the group's vocabulary, its class axis the group's classes
        (``group_classes``: a zero-shot reader's prompts name them, so its scenes are read as that group's are)."""
        if group is None or not self.full_grammar.groups:
            return self.semantic_encoder, self.full_grammar
        if group not in self._readers:
            full = self.full_grammar.for_group(group)
            if group_classes:
                full = full.with_choices(full.class_axis, list(group_classes))
            if self.models is None:
                raise ConfigError("a class group's context reader needs the stack's reward models")
            self._readers[group] = (self.models.semantic_encoder(grammar=full, generator=self.generator,
                                                                 image_encoder=self.models.image_encoder), full)
        return self._readers[group]


def instantiate_model(model_cfg: DictConfig, grammar: Grammar) -> Generator:
    """Build a ``model=`` config; backends that draw from the grammar (procedural) receive ``grammar``."""
    return instantiate(model_cfg, **({"grammar": grammar} if "grammar" in model_cfg else {}))


def build_stack(cfg: DictConfig, class_names: list[str] | None = None) -> SearchStack:
    """Instantiate grammar, model, reward, semantic encoder and search from a composed config.

    ``class_names`` (a dataset's classes) replace the grammar's class-axis choices when they differ.
    """
    full = instantiate(cfg.grammar)
    if class_names is not None and full.class_axis and list(full.axis(full.class_axis).choices) != list(class_names):
        full = full.with_choices(full.class_axis, class_names)
    env: EnvSettings = OmegaConf.to_object(cfg.env)
    grammar = full.restrict(env.fix, env.exclude)
    generator = instantiate_model(cfg.model, full)
    models: RewardModels = instantiate(cfg.reward, _convert_="all")
    reward, semantic = models.build(full, generator)
    search = instantiate(cfg.search)
    return SearchStack(grammar, full, generator, models.image_encoder, reward, semantic, search, env, models)


def class_candidates(stack: SearchStack, grammar: Grammar, probs: np.ndarray, k: int) -> list[str]:
    """The ``k`` classes of ``grammar``'s class axis the semantic encoder finds likeliest in the input image
    (``probs``: its class distribution over :attr:`SearchStack.full_grammar`'s class axis), likeliest first,
    so the walk starts at the best guess and each step goes to the next most plausible class."""
    axis = grammar.axis(grammar.class_axis)
    names = stack.full_grammar.axis(grammar.class_axis).choices
    allowed = {c.lower() for c in axis.choices}  # env.exclude may have removed some
    ranked = [names[i] for i in np.argsort(-probs, kind="stable") if names[i].lower() in allowed]
    return ranked[: int(k)]


def read(stack: SearchStack, images: Sequence[Image.Image], label: str | None = None) -> InputReading:
    """A class's input images read by the stack's semantic encoder over the full grammar (:mod:`pipeline.reading`)."""
    return read_inputs(stack.semantic_encoder, stack.full_grammar, images, label, stack.env.acceptance)


def prepare(stack: SearchStack, reading: InputReading) -> dict[str, Any]:
    """The reward's precomputed input of a class: the similarity terms against its first input image, class
    consistency against the reading's class target (:meth:`InputReading.target`: the class aimed at and the rule)."""
    return stack.reward.prepare(reading.images[0], reading.target())


def make_env(stack: SearchStack, target: Image.Image | InputReading, seed: int, group: str | None = None,
             renderer: Renderer | RenderPool | None = None) -> GridEnv:
    """The MDP for one class: goal and start encodings from the semantic encoder's reading of the input image
    (or of a class's k inputs, an :class:`InputReading`), per-state seeds, the grid of the class's group
    (:meth:`SearchStack.grammars`), the class axis cut to the label where the reading is label-anchored, else
    to the inputs' likeliest ``env.class_candidates`` classes. Renders go through ``renderer`` (a clone worker's
    pool), else through a renderer of this search's own at ``env.batch_size``."""
    e = stack.env
    reading = target if isinstance(target, InputReading) else read(stack, [target])
    seeds = [derive_seed("state-seed", seed, k) for k in range(e.seeds_per_state)]
    prepared = prepare(stack, reading)
    evaluator = StateEvaluator(renderer or Renderer(stack.generator, stack.reward, e.batch_size), reading.images[0], seeds,
                               prepared=prepared, render_ahead=e.render_ahead, per_state=e.state_seeds == "per_state")
    grammar, _ = stack.grammars(group)
    k = e.class_candidates
    if reading.label is not None:
        grammar, _ = stack.grammars(group, [reading.label])
    elif k and grammar.class_axis and len(grammar.axis(grammar.class_axis)) > int(k):
        grammar, _ = stack.grammars(group, class_candidates(stack, grammar, reading.class_probs, k))
    goal = grammar.translate(reading.goal, stack.full_grammar)
    start = _start_encoding(stack, grammar, e.start, e.mode, goal, reading.images[0].size[0], seed)
    return GridEnv.from_settings(grammar, evaluator, start, goal, e)


def _start_encoding(stack: SearchStack, grammar: Grammar, spec: Any, mode: str, goal: Encoding, size: int, seed: int) -> Encoding:
    """``auto``: the goal encoding in goal mode (the agent knows it; a walk from noise to the class spends
    renders on states that are never accepted), the noise encoding in reward-only mode (the agent must not
    be handed the goal)."""
    if spec == "auto":
        spec = "goal" if mode == "goal" else "noise"
    if spec == "goal":
        if mode != "goal":
            raise ConfigError("env.start=goal needs env.mode=goal (in reward_only mode the agent never sees the goal encoding)")
        return goal
    if spec == "noise":  # the paper's Y_0: the semantic encoding of a random-noise image
        return grammar.translate(stack.semantic_encoder.encode([noise_image(size, seed)])[0], stack.full_grammar)
    if isinstance(spec, Mapping):
        partial = dict(spec)
        for a in grammar.axes:
            partial.setdefault(a.name, a.choices[0])
        return grammar.encode(partial)
    if isinstance(spec, (list, tuple)):
        return grammar.check(spec)
    raise ConfigError(f"env.start must be 'auto', 'goal', 'noise', a list of indices or a mapping of attributes, got {spec!r}")
