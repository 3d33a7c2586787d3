"""Whole diffusers pipelines of tiny, randomly initialised components, one per family we ship a preset for
(``sd``: Stable Diffusion 1.x/2.x; ``sdxl``: SDXL/SDXL-Turbo; ``flux``: FLUX.1), saved with
``save_pretrained`` so that tests load them through the same ``from_pretrained`` path as the real
checkpoints. The architecture is the family's; only the widths and depths are small."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from diffusers import (
    AutoencoderKL, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel,
    StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel,
)
from transformers import CLIPTextModelWithProjection, T5Config, T5EncoderModel

from pipeline.models import tiny
from pipeline.models.tokenizer import write_clip_tokenizer, write_t5_tokenizer

FAMILY_PIPELINES = {"sd": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline, "flux": FluxPipeline}
HIDDEN = 32  # every text encoder's width


def sdxl_unet(time_dim: int = 8) -> UNet2DConditionModel:
    """SDXL's UNet: linear-projection transformers, cross-attention on both encoders' states (concatenated)
    and the "text_time" added conditioning (pooled text embedding + six size/crop numbers)."""
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * HIDDEN, attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + HIDDEN, norm_num_groups=8,
    )


def flux_vae() -> AutoencoderKL:
    """FLUX's VAE layout (no quant convs, a shift factor) at two levels: 32 px images <-> 16x16x4 latents."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=8, sample_size=32, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
    )


def flux_transformer() -> FluxTransformer2DModel:
    """FLUX's MMDiT: one double-stream and one single-stream block; latents packed 2x2 (4 channels -> 16)."""
    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=HIDDEN, pooled_projection_dim=HIDDEN,
        guidance_embeds=False, axes_dims_rope=(4, 6, 6),
    )


def t5_encoder(vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=HIDDEN, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))


def build(family: str, texts: Iterable[str], out_dir: str | Path, seed: int = 0, variant: str | None = None) -> Path:
    """Build the tiny ``family`` pipeline whose tokenizers cover ``texts``; save it under ``out_dir``."""
    if family not in FAMILY_PIPELINES:
        raise ValueError(f"no tiny pipeline for family '{family}' (have {sorted(FAMILY_PIPELINES)})")
    texts = list(texts)
    root = Path(out_dir)
    tok = write_clip_tokenizer(texts, root / "_tokenizer")
    torch.manual_seed(seed)
    if family == "sd":
        pipe = StableDiffusionPipeline(
            vae=tiny.vae(block_out_channels=(16, 16)), text_encoder=tiny.text_encoder(len(tok), hidden=HIDDEN, layers=1),
            tokenizer=tok, unet=tiny.unet(block_out_channels=(16, 32), cross_attention_dim=HIDDEN), scheduler=tiny.scheduler(),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    elif family == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=tiny.vae(block_out_channels=(16, 16)), text_encoder=tiny.text_encoder(len(tok), hidden=HIDDEN, layers=1),
            text_encoder_2=CLIPTextModelWithProjection(tiny.text_config(len(tok), hidden=HIDDEN, layers=1, projection=HIDDEN)),
            tokenizer=tok, tokenizer_2=tok, unet=sdxl_unet(), scheduler=EulerDiscreteScheduler(
                num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                timestep_spacing="trailing"),
        )
    else:
        t5 = write_t5_tokenizer(texts, root / "_tokenizer_2")
        pipe = FluxPipeline(
            vae=flux_vae(), text_encoder=tiny.text_encoder(len(tok), hidden=HIDDEN, layers=1), tokenizer=tok,
            text_encoder_2=t5_encoder(len(t5)), tokenizer_2=t5, transformer=flux_transformer(),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
        )
    folder = root / family
    pipe.save_pretrained(folder, variant=variant)
    return folder
