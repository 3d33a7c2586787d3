"""Real-architecture backends on tiny randomly initialised models, saved and reloaded like real checkpoints."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.encoders.clip import ClipEncoder, ClipZeroShotSemanticEncoder
from pipeline.errors import InputError
from pipeline.generators.diffusers_generator import DiffusersGenerator
from pipeline.models import tiny, tiny_pipelines
from pipeline.models.tokenizer import write_clip_tokenizer

PROMPTS = ["a large red solid star on a white background", "a small blue dotted circle on a black background"]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory, grammar):
    """An SD-format pipeline of tiny random components, written with save_pretrained."""
    return tiny_pipelines.build("sd", [grammar.decode(e) for e in grammar.grid()], tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def generator(sd_folder):
    return DiffusersGenerator(str(sd_folder), pipeline_class="StableDiffusionPipeline", device="cpu",
                              num_inference_steps=4, guidance_scale=2.0, height=32, width=32, max_batch_size=8)


def pixels(images):
    return np.stack([np.asarray(im).round().astype(np.int16) for im in images])


def test_generation_is_reproducible_per_seed(generator):
    a = generator.generate(PROMPTS, [1, 2])
    b = generator.generate(PROMPTS, [1, 2])
    assert a[0].size == (32, 32)
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a[:1]), pixels(generator.generate(PROMPTS[:1], [3])))


def test_an_out_of_memory_back_off_on_the_diffusion_generator_halves_the_padded_call(sd_folder, reward):
    """A device that holds at most 2 images: the renderer's padded calls of 8 run out of memory, and the call size is
    halved from 8 (not from the call's 3 images) to 4, then 2, whatever call hit it; the warm-up goes through the same
    back-off. What holds after it: every image is the same bytes as a run padded to 2 from the start
    (model.max_batch_size=2), and within a grey level of the run that never backed off (kernels of another batch)."""
    from helpers.oom import DeviceOutOfMemoryAbove
    from pipeline.rendering import Renderer, RenderJob

    def make(max_batch_size):
        return DiffusersGenerator(str(sd_folder), pipeline_class="StableDiffusionPipeline", device="cpu", num_inference_steps=4,
                                  guidance_scale=2.0, height=32, width=32, max_batch_size=max_batch_size)

    jobs = [RenderJob(PROMPTS[i % 2], 300 + i) for i in range(3)]
    device = DeviceOutOfMemoryAbove(make(8), limit=2)
    renderer = Renderer(device, reward, batch_size=8)
    backed = pixels(r.image.permute(1, 2, 0).cpu().numpy() * 255 for r in renderer.render_call(jobs))
    assert renderer.backoffs == [4, 2] and renderer.batch_size == 2 and device.call_size == 2 and device.raised == 2
    at_two = pixels(r.image.permute(1, 2, 0).cpu().numpy() * 255 for r in Renderer(make(2), reward, 8).render_call(jobs))
    clean = pixels(r.image.permute(1, 2, 0).cpu().numpy() * 255 for r in Renderer(make(8), reward, 8).render_call(jobs))
    assert np.array_equal(backed, at_two)
    assert np.abs(backed - clean).max() <= 1
    warm = Renderer(DeviceOutOfMemoryAbove(make(8), limit=4), reward, batch_size=8)
    warm.warm_up(PROMPTS[0])
    assert warm.backoffs == [4] and warm.batch_size == 4
    with pytest.raises(Exception, match="CUDA out of memory rendering one image"):
        Renderer(DeviceOutOfMemoryAbove(make(8), limit=0), reward, batch_size=8).render_call(jobs)


def test_an_image_does_not_depend_on_its_batch(generator, sd_folder):
    """With pad_batches (the presets' setting) every pipeline call has max_batch_size images, so an image is the
    same bytes alone, at position 5 of a full call, or in the short second call of 11; without it the kernels
    see other batch shapes and a pixel may move by a grey level (allowed: at most 1/255)."""
    prompts = [PROMPTS[i % 2] for i in range(11)]
    seeds = list(range(100, 111))
    batch = pixels(generator.generate(prompts, seeds))
    alone = pixels(generator.generate([prompts[5]], [seeds[5]]))[0]
    assert generator.call_size == 8
    assert np.array_equal(batch[5], alone)
    assert np.array_equal(batch[9], pixels(generator.generate([prompts[9]], [seeds[9]]))[0])
    assert np.array_equal(batch[9], pixels(generator.generate(prompts[4:10], seeds[4:10]))[5])
    free = DiffusersGenerator(str(sd_folder), pipeline_class="StableDiffusionPipeline", device="cpu", num_inference_steps=4,
                              guidance_scale=2.0, height=32, width=32, max_batch_size=8, pad_batches=False)
    assert free.call_size is None
    unpadded = pixels(free.generate(prompts[:8], seeds[:8]))
    assert np.abs(unpadded[5] - pixels(free.generate([prompts[5]], [seeds[5]]))[0]).max() <= 1
    assert np.abs(unpadded[5] - alone).max() <= 1


def test_prompt_embeddings_are_cached(generator):
    generator.generate(PROMPTS * 3, [1, 2, 3, 4, 5, 6])
    assert all(p in generator.prompt_cache for p in PROMPTS) and len(generator.prompt_cache) == 2


def test_scheduler_and_model_id_from_config(sd_folder):
    g = DiffusersGenerator(str(sd_folder), pipeline_class="StableDiffusionPipeline", device="cpu", scheduler="EulerDiscreteScheduler",
                           num_inference_steps=2, guidance_scale=1.0, height=32, width=32)
    assert type(g.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert "EulerDiscreteScheduler" in g.model_id and "steps=2" in g.model_id
    assert len(g.generate(PROMPTS, [0, 1])) == 2


def test_auto_pipeline_loads_the_same_folder(sd_folder):
    g = DiffusersGenerator(str(sd_folder), device="cpu", num_inference_steps=2, height=32, width=32)
    assert type(g.pipe).__name__ == "StableDiffusionPipeline"


def test_missing_folder_and_unreachable_hub_id(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="folder '/no/such/model' does not exist"):
        DiffusersGenerator("/no/such/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=r"could not load diffusion pipeline \(model.pretrained\) 'nobody/no-such-model'.*hf download"):
        DiffusersGenerator("nobody/no-such-model", pipeline_class="StableDiffusionPipeline")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, grammar):
    root = tmp_path_factory.mktemp("tiny_clip")
    tok = write_clip_tokenizer([grammar.decode(e) for e in grammar.grid()], root)
    torch.manual_seed(0)
    tiny.clip_model(len(tok), hidden=32, layers=1, projection=16).save_pretrained(root)
    return root


def test_clip_encoder_embeddings(clip_folder, world):
    enc = ClipEncoder(str(clip_folder), device="cpu", batch_size=3)
    images = [world.sample(i).image for i in range(7)] + [Image.new("RGB", (50, 80))]
    e = enc.embed(images)
    assert e.shape == (8, 16) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(enc.embed(images[:2]), e[:2], atol=1e-5)  # batching does not matter
    t = enc.embed_text(PROMPTS)
    assert t.shape == (2, 16) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    maps = enc.feature_maps(images[:2])
    assert maps[0].shape == (2, 32, 8, 8)


def test_clip_zero_shot_semantic_encoder_runs(clip_folder, grammar, world):
    sem = ClipZeroShotSemanticEncoder(grammar, ClipEncoder(str(clip_folder), device="cpu"), prompts_per_choice=2)
    (enc,) = sem.encode([world.sample(0).image])
    assert grammar.check(enc) == enc


def test_segformer_segmenter_on_a_tiny_random_model(tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    from pipeline.encoders.segformer import SegformerSegmenter

    cfg = SegformerConfig(num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                          num_attention_heads=[1, 2], decoder_hidden_size=16, num_labels=5,
                          id2label={i: f"c{i}" for i in range(5)}, label2id={f"c{i}": i for i in range(5)})
    SegformerForSemanticSegmentation(cfg).save_pretrained(tmp_path)
    seg = SegformerSegmenter(str(tmp_path), image_size=64, device="cpu")
    p = seg.segment([Image.new("RGB", (64, 64), (200, 10, 10))] * 2)
    assert p.shape == (2, 5, 16, 16) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert seg.class_names == ("c0", "c1", "c2", "c3", "c4")


def test_shapes_cnn_round_trip(tmp_path, grammar, world):
    from pipeline.encoders.shapes_cnn import ShapesCnn, ShapesCnnSemanticEncoder
    from pipeline.models.shapes_cnn import ShapesNet

    torch.manual_seed(0)
    net = ShapesNet([len(a) for a in grammar.axes], [a.name for a in grammar.axes], seg_classes=11).eval()
    net.save_pretrained(tmp_path)
    cnn = ShapesCnn(str(tmp_path))
    images = [world.sample(i).image for i in range(3)]
    assert cnn.segment(images).shape == (3, 11, 32, 32)
    assert [m.shape[-1] for m in cnn.feature_maps(images)] == [32, 16, 8, 4]
    sem = ShapesCnnSemanticEncoder(grammar, str(tmp_path))
    assert all(grammar.check(e) == e for e in sem.encode(images))


def test_the_fp16_path_builds_and_renders_as_far_as_the_cpu_allows(sd_folder):
    """model.dtype=float16, the GPU presets' setting, on the CPU (torch runs these half-precision kernels here; diffusers
    warns): the pipeline loads in fp16, renders finite images on the 8-bit grid, and hands float32 tensors to the rewards."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = DiffusersGenerator(str(sd_folder), pipeline_class="StableDiffusionPipeline", device="cpu", dtype="float16",
                               num_inference_steps=2, guidance_scale=2.0, height=32, width=32, max_batch_size=2)
        assert g.pipe.unet.dtype == torch.float16 and g.pipe.vae.dtype == torch.float16
        t = g.render(PROMPTS, [1, 2])
        images = g.generate(PROMPTS, [1, 2])
    assert t.dtype == torch.float32 and t.shape == (2, 3, 32, 32) and torch.isfinite(t).all()
    assert torch.equal(t, torch.round(t * 255) / 255)  # the 8-bit grid the dataset stores
    assert np.array_equal(pixels(images), np.round(t.permute(0, 2, 3, 1).numpy() * 255).astype(np.int16))
