import numpy as np
import pytest

from helpers.components import CountingGenerator, grid_env
from pipeline.env import StateEvaluator
from pipeline.rendering import Renderer
from pipeline.errors import ConfigError


def small_env(grammar, generator, reward, target, **kw):
    ev = StateEvaluator(Renderer(generator, reward, kw.pop("batch_size", 5)), target, seeds=kw.pop("seeds", [11, 12]))
    kw.setdefault("mode", "reward_only")
    kw.setdefault("budget", None)
    return grid_env(grammar, ev, start=kw.pop("start", (0, 0, 0, 0, 0)), **kw)


def test_actions_move_one_axis_and_clip(grammar, generator, reward, world):
    env = small_env(grammar, generator, reward, world.sample(0).image)
    assert env.n_actions == 10
    assert env.move((0, 0, 0, 0, 0), 0) == (0, 0, 0, 0, 0)  # clipped at the lower border
    assert env.move((0, 0, 0, 0, 0), 1) == (1, 0, 0, 0, 0)
    assert env.move((0, 0, 0, 2, 0), 7) == (0, 0, 0, 2, 0)  # clipped at the upper border
    assert env.move((0, 3, 0, 0, 0), 2) == (0, 2, 0, 0, 0)


def test_cache_never_renders_a_state_seed_twice(grammar, generator, reward, world):
    counting = CountingGenerator(generator)
    env = small_env(grammar, counting, reward, world.sample(0).image)
    states = [env.move(env.start, a) for a in range(env.n_actions)] * 3
    first = env.reward_of(states)
    again = env.reward_of(states[::-1])
    assert len(counting.calls) == len(set(counting.calls)) == env.renders
    assert env.renders == len(set(states)) * 2  # two seeds per state
    assert [v.encoding for v in env.trace] == list(dict.fromkeys(states))  # the trace is keyed by encoding
    np.testing.assert_allclose(again[::-1], first)


def test_renders_are_batched(grammar, generator, reward, world):
    counting = CountingGenerator(generator)
    env = small_env(grammar, counting, reward, world.sample(0).image, batch_size=4)
    env.reward_of([(i, 0, 0, 0, 0) for i in range(5)])
    assert counting.batches == [4, 4, 2]


def test_goal_mode_adds_closeness_and_ends_at_goal(grammar, generator, reward, world):
    goal = (1, 0, 0, 0, 0)
    env = small_env(grammar, generator, reward, world.sample(0).image, goal=goal, mode="goal", goal_weight=1.0,
                   goal_axes=[a.name for a in grammar.axes], end_at_goal=True)
    img = env.image_rewards([goal])[0]
    assert env.reward_of([goal])[0] == pytest.approx((img + 1.0) / 2)
    nxt, _, done = env.step(env.start, 1, 0)
    assert nxt == goal and done


def test_goal_closeness_defaults_to_the_class_axis(grammar, generator, reward, world):
    goal = (3, 5, 2, 1, 1)
    env = small_env(grammar, generator, reward, world.sample(0).image, goal=goal, mode="goal", end_at_goal=True)
    assert env.closeness((3, 0, 0, 0, 0)) == 1.0 and env.at_goal((3, 7, 0, 2, 0))  # other axes do not count
    assert env.closeness((0, 5, 2, 1, 1)) == pytest.approx(1 - 3 / 9)
    assert not env.step((1, 0, 0, 0, 0), 1, 0)[2]  # one class short of the goal
    assert env.step((2, 0, 0, 0, 0), 1, 0)[2]  # arriving on the goal's class ends the episode (end_at_goal)


def test_budget_and_acceptance(grammar, generator, reward, world):
    env = small_env(grammar, generator, reward, world.sample(0).image, budget=4)
    env.observe([(0, 0, 0, 0, 0)])
    assert env.renders == 2 and not env.exhausted
    env.observe([(1, 0, 0, 0, 0)])
    assert env.exhausted
    # the fixture's reward has no class-consistency term: nothing is accepted
    assert not env.accepted((0, 0, 0, 0, 0)) and env.visit((0, 0, 0, 0, 0)).score != env.visit((0, 0, 0, 0, 0)).score


def test_horizon_and_threshold_end_episodes(grammar, generator, reward, world):
    env = small_env(grammar, generator, reward, world.sample(0).image, horizon=3)
    assert not env.step(env.start, 1, 0)[2] and env.step(env.start, 1, 2)[2]
    env = small_env(grammar, generator, reward, world.sample(0).image, reward_threshold=0.0)
    assert env.step(env.start, 1, 0)[2]


@pytest.mark.parametrize(
    "kw, message",
    [({"mode": "goal"}, "needs a goal")],  # choices and ranges: the schema's (test_configs)
)
def test_invalid_env_config(grammar, generator, reward, world, kw, message):
    with pytest.raises(ConfigError, match=message):
        small_env(grammar, generator, reward, world.sample(0).image, **kw)
