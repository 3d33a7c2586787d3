"""Noisy diffusion gradient: optimise a continuous relaxation of the encoding directly, with noise.

Relaxation (our choice; the paper leaves it open): each axis ``i`` holds logits ``θ_i`` and the policy
``p_i = softmax(θ_i / τ)`` over its choices. Each step samples ``samples_per_step`` encodings from
``p``, renders them (diffusion feedback) and updates::

    goal mode:        θ_i ← θ_i + η · (onehot(g_i) − p_i) · [i ∈ G]            + σ_t · ε
    reward-only mode: θ_i ← θ_i + η · mean_k  Â_k (onehot(s_k,i) − p_i)        + σ_t · ε

with ``G`` the env's goal axes (the class axis by default: the gradient pulls toward the class and leaves
the other axes to the noise, which spreads them), ``Â_k`` the rewards standardised within the step (a
score-function gradient of the expected reward), ``ε ~ N(0, I)`` and ``σ_t = σ_0 · noise_decay^t``.
Every sampled encoding is rendered, so every one is a candidate for the dataset, accepted or not by its
class-consistency score like Q-learning's. Stops after ``steps`` or when the env's render budget is spent.
"""

from __future__ import annotations

import numpy as np

from pipeline.env import RewardMode
from pipeline.errors import ConfigError
from pipeline.search.result import SearchProblem, SearchResult
from pipeline.seeding import rng_for


class NoisyGradient:
    name = "noisy_gradient"

    def __init__(
        self,
        *,
        steps: int,
        samples_per_step: int,
        lr: float,
        noise: float,
        noise_decay: float,
        temperature: float,
        init_confidence: float,
    ) -> None:
        if steps < 1 or samples_per_step < 1:
            raise ConfigError("search.steps and search.samples_per_step must be >= 1")
        if temperature <= 0:
            raise ConfigError(f"search.temperature must be > 0, got {temperature}")
        self.steps, self.samples_per_step, self.lr = int(steps), int(samples_per_step), float(lr)
        self.noise, self.noise_decay, self.temperature = float(noise), float(noise_decay), float(temperature)
        self.init_confidence = float(init_confidence)

    def run(self, problem: SearchProblem) -> SearchResult:
        env, rng = problem.env, rng_for("noisy-gradient", problem.seed)
        shape = env.grammar.shape
        theta = [np.eye(k)[s] * self.init_confidence for k, s in zip(shape, env.start)]
        trajectory = [env.start]
        env.reward_of([env.start])
        for t in range(self.steps):
            probs = [self._softmax(th) for th in theta]
            samples = [tuple(int(rng.choice(k, p=p)) for k, p in zip(shape, probs)) for _ in range(self.samples_per_step)]
            rewards = env.reward_of(samples)
            if env.mode is RewardMode.GOAL:
                grads = [(np.eye(k)[g] - p) * (i in env.goal_axes) for i, (k, g, p) in enumerate(zip(shape, env.goal, probs))]
            else:
                adv = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
                grads = [
                    np.mean([a * (np.eye(k)[s[i]] - p) for a, s in zip(adv, samples)], axis=0)
                    for i, (k, p) in enumerate(zip(shape, probs))
                ]
            sigma = self.noise * self.noise_decay**t
            theta = [th + self.lr * g + sigma * rng.standard_normal(len(th)) for th, g in zip(theta, grads)]
            mode_state = tuple(int(np.argmax(th)) for th in theta)
            if mode_state != trajectory[-1]:
                trajectory.append(mode_state)
            if env.exhausted:
                break
        env.reward_of([trajectory[-1]])
        return SearchResult.from_env(self.name, env, trajectory, steps=t + 1)

    def _softmax(self, logits: np.ndarray) -> np.ndarray:
        z = logits / self.temperature
        z = np.exp(z - z.max())
        return z / z.sum()
