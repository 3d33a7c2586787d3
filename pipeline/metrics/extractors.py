"""Feature extractors for the metrics: ``nn.Module`` s from uint8 images ``[N, 3, H, W]`` to ``[N, D]``.

Each carries ``num_features`` (torchmetrics reads it), ``name`` (the report always names the extractor: distances
from different extractors are not comparable) and ``input_size``: the side, in pixels, of the images it was made for
(Inception 299, DINOv2 224, a CLIP model its config's). The metrics load every image at that size unless told otherwise
(``image_size``), so no extractor scores thumbnails without the report saying so.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models.loading import load_pretrained

from pipeline.encoders.clip import OPENAI_MEAN, OPENAI_STD
from pipeline.encoders.segformer import IMAGENET_MEAN, IMAGENET_STD


class _Normalised(nn.Module):
    def __init__(self, size: int, mean, std) -> None:
        super().__init__()
        self.size = self.input_size = int(size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.resize = "bicubic, antialias (torch)"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if x.shape[-2:] != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)
        return (x.clamp(0, 1) - self.mean) / self.std


class ClipFeatures(_Normalised):
    """FD-CLIP: the image embedding (after projection) of any transformers ``CLIPModel``."""

    def __init__(self, pretrained: str, image_size: int | None = None) -> None:
        from transformers import CLIPModel

        model = load_pretrained(CLIPModel.from_pretrained, pretrained, "CLIP model").eval()
        super().__init__(image_size or model.config.vision_config.image_size, OPENAI_MEAN, OPENAI_STD)
        self.model = model
        self.num_features = int(model.config.projection_dim)
        self.name = f"clip:{pretrained}@{self.size}px"

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model.get_image_features(pixel_values=self.prepare(x))
        return getattr(f, "pooler_output", f).float()


class Dinov2Features(_Normalised):
    """FD-DINOv2 (Stein et al. 2023): the class token of a transformers ``Dinov2Model``."""

    def __init__(self, pretrained: str, image_size: int = 224) -> None:
        from transformers import Dinov2Model

        model = load_pretrained(Dinov2Model.from_pretrained, pretrained, "DINOv2 model").eval()
        patch = model.config.patch_size
        if image_size % patch:
            raise ConfigError(f"features.image_size must be a multiple of the DINOv2 patch size {patch}, got {image_size}")
        super().__init__(image_size, IMAGENET_MEAN, IMAGENET_STD)
        self.model = model
        self.num_features = int(model.config.hidden_size)
        self.name = f"dinov2:{pretrained}@{self.size}px"

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.prepare(x)).pooler_output.float()


class InceptionFeatures(nn.Module):
    """The standard FID Inception-v3 (pool3, 2048-d) through torchmetrics and torch-fidelity."""

    def __init__(self, weights_path: str | None = None, antialias: bool = True) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.model = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=weights_path, antialias=antialias
            )
        except (ImportError, ModuleNotFoundError, RuntimeError) as e:
            if "torch-fidelity" in str(e) or "torch_fidelity" in str(e) or isinstance(e, ImportError):
                raise ConfigError(
                    "features=inception needs torch-fidelity: pip install -e '.[inception]' (with a torchvision that matches your torch)"
                ) from None
            raise
        self.num_features = 2048
        self.input_size = 299  # what the FID Inception was trained at; torchmetrics resizes anything else to it
        self.resize = f"bilinear{', antialias' if antialias else ' (TF1 compatible)'} to 299 (torchmetrics)"
        self.name = "inception-v3-compat (torch-fidelity weights)" + (f" from {weights_path}" if weights_path else "")

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(torch.uint8)).float()


class PrecomputedFeatures(nn.Module):
    """The identity: lets torchmetrics' FID/KID consume features extracted (and cached) beforehand."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.input_size = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
