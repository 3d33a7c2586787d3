"""Searches over the encoding grid. Each returns a :class:`~pipeline.search.result.SearchResult`."""

from pipeline.search.baselines import ClassNamePrompt, ClassNameRandomAttributes, Exhaustive, GoalEncoding, RandomSearch
from pipeline.search.noisy_gradient import NoisyGradient
from pipeline.search.qlearning import QLearning
from pipeline.search.result import Candidate, SearchProblem, SearchResult

__all__ = [
    "Candidate", "ClassNamePrompt", "ClassNameRandomAttributes", "Exhaustive", "GoalEncoding", "NoisyGradient", "QLearning",
    "RandomSearch", "SearchProblem", "SearchResult",
]
