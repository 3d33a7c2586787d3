"""Renders stay on the device: the diffusion generator hands the renderer a tensor, CLIP resizes and normalises it where
it is, and only the images that become samples are made into PIL images and encoded (on CPU here, the same code path
a GPU runs). The bytes of a sample are those of diffusers' own ``pil`` output."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from helpers import ROOT
from pipeline.compose import load_config
from pipeline.encoders.clip import ClipEncoder, ClipZeroShotSemanticEncoder
from pipeline.grammar import Grammar
from pipeline.images import to_host, to_pil
from pipeline.rendering import Renderer, RenderJob
from pipeline.rewards import build_reward

PROMPTS = ["a large red solid star on a white background", "a small blue dotted circle on a black background",
           "a medium green striped square on a grey background"]


@pytest.fixture(scope="module")
def sd():
    return instantiate(load_config("run_search", ["model=tiny_shapes", "model.max_batch_size=4"]).model)


def test_generate_gives_the_bytes_of_diffusers_pil_output(sd):
    seeds = [1, 2, 3]
    ours = sd.generate(PROMPTS, seeds)
    pad = sd.max_batch_size - len(PROMPTS)
    theirs = sd.pipe(**sd.prompt_cache.kwargs(PROMPTS + [PROMPTS[-1]] * pad), num_inference_steps=sd.steps, guidance_scale=sd.guidance,
                     generator=[torch.Generator("cpu").manual_seed(s) for s in seeds + [seeds[-1]] * pad],
                     height=sd.height, width=sd.width, output_type="pil").images[: len(PROMPTS)]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours, theirs))
    rendered = sd.render(PROMPTS, seeds)
    assert rendered.shape == (3, 3, sd.height, sd.width) and rendered.device == sd.device
    assert all(np.array_equal(np.asarray(to_pil(x)), np.asarray(a)) for x, a in zip(rendered, ours))
    assert all(np.array_equal(np.asarray(to_pil(to_host(x))), np.asarray(a)) for x, a in zip(rendered, ours))


def test_no_pil_image_is_made_between_a_search_render_and_its_score(sd, monkeypatch):
    grammar = Grammar.from_yaml(ROOT / "conf" / "grammar" / "shapes.yaml")
    clip = ClipEncoder(str(ROOT / "models" / "tiny_clip"), device="cpu")
    reward = build_reward(clip, None, {"class": 1.0, "embedding": 1.0, "features": 1.0},
                          semantic_encoder=ClipZeroShotSemanticEncoder(grammar, clip))
    target = reward.prepare(sd.generate(PROMPTS[:1], [7])[0])
    renderer = Renderer(sd, reward, 4)
    made = []
    for name in ("fromarray", "frombytes", "frombuffer", "new"):
        real = getattr(Image, name)
        monkeypatch.setattr(Image, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))
    monkeypatch.setattr(Image.Image, "resize", lambda *a, **k: made.append("resize"))
    out = renderer.render_call([RenderJob(p, s, target) for p, s in zip(PROMPTS, [1, 2, 3])])
    assert made == [] and all(torch.is_tensor(r.image) for r in out)
    assert all(0 <= r.reward <= 1 and 0 <= r.score <= 1 for r in out)
    monkeypatch.undo()  # the same scores through PIL images of the same bytes, to CLIP's resize precision
    through_pil = reward.score_many([to_pil(r.image) for r in out] + [to_pil(out[-1].image)], [target] * 4)[0][:3]
    assert np.allclose([r.reward for r in out], through_pil, atol=0.02)


def test_clip_resizes_a_larger_render_on_the_device_as_pil_does_on_the_host():
    """A 512-pixel render read by a 224-pixel CLIP is resized there, bicubic with antialiasing like PIL's: the two
    preprocessings agree to a few grey levels, and the embeddings all but exactly."""
    clip = ClipEncoder(str(ROOT / "models" / "tiny_clip"), device="cpu")
    rng = np.random.default_rng(0)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(rng.random((2, 3, 16, 24), dtype=np.float32)), size=(96, 144),
                                             mode="bilinear", align_corners=False)
    renders = (smooth * 255).round() / 255
    on_device = clip.preprocess(list(renders))
    on_host = clip.preprocess([to_pil(x) for x in renders])
    assert on_device.shape == on_host.shape == (2, 3, 32, 32)
    assert (on_device - on_host).abs().max().item() * 0.27 < 3 / 255  # normalised by CLIP's std (~0.27)
    e_device, e_host = clip.embed(list(renders)), clip.embed([to_pil(x) for x in renders])
    assert (e_device * e_host).sum(1).min() > 0.99
