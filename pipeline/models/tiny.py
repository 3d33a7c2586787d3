"""Tiny configurations of the real architectures (Stable Diffusion's components, CLIP).

The embedded shapes-world models are these, trained; tests build them randomly initialised to
exercise the exact loaders that serve Stable Diffusion and CLIP checkpoints.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig


def text_config(vocab_size: int, hidden: int = 64, layers: int = 2, max_length: int = 24, projection: int = 64) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32), max_position_embeddings=max_length, projection_dim=projection,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )


def text_encoder(vocab_size: int, **kw) -> CLIPTextModel:
    return CLIPTextModel(text_config(vocab_size, **kw))


def vae(block_out_channels: tuple[int, ...] = (32, 64), latent_channels: int = 4, sample_size: int = 32) -> AutoencoderKL:
    """Two levels: 32x32 images <-> 16x16x4 latents (8x8 latents lose the shapes' class)."""
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=block_out_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=1, norm_num_groups=16, sample_size=sample_size,
    )


def unet(sample_size: int = 16, block_out_channels: tuple[int, ...] = (48, 96), cross_attention_dim: int = 64) -> UNet2DConditionModel:
    """Cross-attention only at 8x8 (and the mid block): attention at 16x16 doubles the cost on a CPU."""
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=block_out_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=16,
    )


def scheduler(prediction_type: str = "v_prediction") -> DDIMScheduler:
    """Stable Diffusion's noise schedule; ``clip_sample=False`` because latents are not bounded like pixels."""
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )


def clip_model(vocab_size: int, image_size: int = 32, patch_size: int = 4, hidden: int = 64, layers: int = 3, projection: int = 64) -> CLIPModel:
    vision = CLIPVisionConfig(
        image_size=image_size, patch_size=patch_size, hidden_size=hidden, intermediate_size=hidden * 4,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32), projection_dim=projection,
    )
    text = text_config(vocab_size, hidden=hidden, layers=2, projection=projection)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=projection))
