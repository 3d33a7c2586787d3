"""CLIP (any transformers ``CLIPModel``, from a folder or a hub id): Reward 3's embeddings, zero-shot encodings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.encoders.base import softmax
from pipeline.generators.base import Generator
from pipeline.grammar import Encoding, Grammar
from pipeline.images import is_tensor
from pipeline.models.loading import load_pretrained
from pipeline.seeding import rng_for
from pipeline.torch_device import resolve_device, resolve_dtype

OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class ClipEncoder:
    """L2-normalised image and text embeddings in batches, and ViT patch features as maps (Reward 2)."""

    def __init__(self, pretrained: str, device: str = "auto", dtype: str = "float32", batch_size: int = 64) -> None:
        from transformers import CLIPModel, CLIPTokenizer

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = load_pretrained(CLIPModel.from_pretrained, pretrained, "CLIP model", torch_dtype=self.dtype).to(self.device).eval()
        self.tokenizer = load_pretrained(CLIPTokenizer.from_pretrained, pretrained, "CLIP tokenizer")
        self.batch_size = int(batch_size)
        vision = self.model.config.vision_config
        self.image_size = int(vision.image_size)
        self.patch_size = int(vision.patch_size)
        mean, std = OPENAI_MEAN, OPENAI_STD
        pre = Path(str(pretrained)) / "preprocessor_config.json"
        if pre.is_file():
            cfg = json.loads(pre.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.num_features = int(self.model.config.projection_dim)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize the short side (bicubic), centre-crop, normalise: CLIP's own preprocessing. Renders that are tensors
        (:meth:`DiffusersGenerator.render`) are resized and normalised where they are, on the device."""
        if len(images) and is_tensor(images[0]):
            return self._preprocess_tensors(torch.stack(list(images)))
        s = self.image_size
        arrs = []
        for im in images:
            im = im.convert("RGB")
            w, h = im.size
            scale = s / min(w, h)
            im = im.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.Resampling.BICUBIC)
            left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
            arrs.append(np.asarray(im.crop((left, top, left + s, top + s)), dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
        return ((x - self.mean) / self.std).to(self.device, self.dtype)

    def _preprocess_tensors(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` floats in [0, 1] (or uint8): bicubic with antialiasing (as PIL's), clamped to [0, 1] (as
        8-bit pixels are), centre-cropped, normalised; on this encoder's device."""
        x = x.to(self.device)
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        s = self.image_size
        h, w = x.shape[-2:]
        scale = s / min(w, h)
        size = (max(s, round(h * scale)), max(s, round(w * scale)))
        if size != (h, w):
            x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        top, left = (size[0] - s) // 2, (size[1] - s) // 2
        x = x[:, :, top : top + s, left : left + s]
        return ((x - self.mean.to(x.device)) / self.std.to(x.device)).to(self.dtype)

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch_size):
            f = self.model.get_image_features(pixel_values=self.preprocess(images[i : i + self.batch_size]))
            f = getattr(f, "pooler_output", f)
            out.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.num_features), np.float32)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[i : i + self.batch_size]), padding="max_length", truncation=True, return_tensors="pt").to(self.device)
            f = self.model.get_text_features(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
            f = getattr(f, "pooler_output", f)
            out.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy())
        return np.concatenate(out)

    @torch.inference_mode()
    def feature_maps(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Patch tokens of every second vision layer as ``[N, C, h, w]`` maps (early = fine, late = coarse)."""
        x = self.preprocess(images)
        hidden = self.model.vision_model(pixel_values=x, output_hidden_states=True).hidden_states
        g = self.image_size // self.patch_size
        maps = []
        for h in hidden[1::2]:
            tokens = h[:, 1:, :].float()  # drop the class token
            maps.append(tokens.transpose(1, 2).reshape(len(images), -1, g, g).cpu().numpy())
        return maps


class ClipZeroShotSemanticEncoder:
    """Image -> encoding by CLIP zero-shot, axis by axis.

    The text side of choice c of axis a is the mean embedding of ``prompts_per_choice`` grammar prompts
    with a = c and the other axes random (prompt ensembling), drawn from a seed of (axis, c) by name, so a class
    reads the same whatever order the dataset lists the classes in; the image's encoding takes, per axis, the
    most similar choice. No renders: the generator is not used.
    """

    def __init__(self, grammar: Grammar, image_encoder: ClipEncoder, generator: Generator | None = None,
                 prompts_per_choice: int = 16, seed: int = 0, logit_scale: float | None = None) -> None:
        self.grammar, self.clip = grammar, image_encoder
        self.text: list[np.ndarray] = []
        for ai, axis in enumerate(grammar.axes):
            prompts = []
            for ci in range(len(axis)):
                rng = rng_for("zero-shot-prompts", seed, axis.name, axis.choices[ci].lower())
                for _ in range(prompts_per_choice):
                    enc = [int(rng.integers(n)) for n in grammar.shape]
                    enc[ai] = ci
                    prompts.append(grammar.decode(enc))
            e = image_encoder.embed_text(prompts).reshape(len(axis), prompts_per_choice, -1).mean(1)
            e -= e.mean(0, keepdims=True)  # remove what all choices share
            self.text.append(e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-8))
        # CLIP's own temperature turns similarities into zero-shot probabilities (100 for OpenAI's models)
        scale = getattr(getattr(image_encoder, "model", None), "logit_scale", None)
        self.logit_scale = float(logit_scale if logit_scale is not None else (scale.exp().item() if scale is not None else 100.0))

    def encode(self, images: Sequence[Image.Image]) -> list[Encoding]:
        emb = self.clip.embed(images)
        return [tuple(int(np.argmax(t @ e)) for t in self.text) for e in emb]

    def probabilities(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Zero-shot softmax over each axis's choices."""
        emb = self.clip.embed(images)
        return [softmax(self.logit_scale * emb @ t.T) for t in self.text]
