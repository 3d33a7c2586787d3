"""Reward 1's segmenter for real images: any SegFormer checkpoint transformers loads (e.g. ADE20k)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.encoders.base import to_array
from pipeline.models.loading import load_pretrained
from pipeline.torch_device import resolve_device

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SegformerSegmenter:
    def __init__(self, pretrained: str, image_size: int = 512, device: str = "auto", batch_size: int = 16) -> None:
        from transformers import SegformerForSemanticSegmentation

        self.device = resolve_device(device)
        self.model = load_pretrained(SegformerForSemanticSegmentation.from_pretrained, pretrained, "SegFormer").to(self.device).eval()
        labels = self.model.config.id2label
        self.class_names = tuple(labels[i] for i in sorted(labels))
        self.image_size, self.batch_size = int(image_size), int(batch_size)
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    @torch.inference_mode()
    def segment(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Class probabilities ``[N, C, H/4, W/4]`` at SegFormer's native output stride."""
        out = []
        for i in range(0, len(images), self.batch_size):
            x = torch.from_numpy(to_array(images[i : i + self.batch_size], self.image_size)).permute(0, 3, 1, 2)
            x = ((x - self.mean) / self.std).to(self.device)
            out.append(self.model(pixel_values=x).logits.softmax(1).float().cpu().numpy())
        return np.concatenate(out)
