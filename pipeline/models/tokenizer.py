"""A CLIPTokenizer (the class Stable Diffusion uses) whose vocabulary covers a grammar's words.

Written locally, since nothing can be downloaded: BPE merges trained (with the ``tokenizers`` library)
until every word of the corpus is one token, plus CLIP's 256 byte symbols alone and word-final, so any
text still tokenizes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_symbols() -> list[str]:
    """The 256 printable symbols GPT-2/CLIP byte-level BPE uses for the bytes 0..255."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = 0
    out = {}
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def corpus_words(texts: Iterable[str]) -> list[str]:
    """Lower-cased words and punctuation, split the way CLIP's pre-tokenizer splits them."""
    words: dict[str, None] = {}
    for t in texts:
        for w in re.findall(r"[a-z]+|[0-9]|[^\s\w]+", t.lower()):
            words[w] = None
    return list(words)


def write_clip_tokenizer(texts: Iterable[str], out_dir: str | Path, max_length: int = 24) -> CLIPTokenizer:
    """Train BPE merges on ``texts`` until every word is one token; save and load it as a CLIPTokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = corpus_words(texts)
    symbols = byte_symbols()
    bpe = Tokenizer(models.BPE(unk_token=EOS, end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=100_000, min_frequency=1, special_tokens=[], initial_alphabet=symbols,
        end_of_word_suffix="</w>", show_progress=False,
    )
    bpe.train_from_iterator([" ".join(words)], trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    for s in symbols + [s + "</w>" for s in symbols] + [BOS, EOS]:  # any byte, alone or word-final
        vocab.setdefault(s, len(vocab))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "bos_token": BOS, "eos_token": EOS,
        "unk_token": EOS, "pad_token": EOS, "do_lower_case": True,
    }))
    tok = CLIPTokenizer.from_pretrained(out)
    unsplit = [w for w in words if len(tok.tokenize(w)) != 1]
    if unsplit:
        raise RuntimeError(f"tokenizer splits corpus words {unsplit[:5]}")
    tok.save_pretrained(out)
    return tok


PAD, T5_EOS, UNK = "<pad>", "</s>", "<unk>"  # T5's ids 0, 1, 2


def write_t5_tokenizer(texts: Iterable[str], out_dir: str | Path, max_length: int = 32):
    """A T5 tokenizer (FLUX's second tokenizer: SentencePiece unigram, ``</s>`` appended) whose pieces are the
    words of ``texts``, each one token with or without its leading space; any other word is ``<unk>``."""
    from transformers import T5TokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = corpus_words(texts)
    pieces = [(PAD, 0.0), (T5_EOS, 0.0), (UNK, 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -1.0) for w in words] + [(w, -2.0) for w in words]
    T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=max_length).save_pretrained(out)
    tok = T5TokenizerFast.from_pretrained(out)
    unsplit = [w for w in words if len(tok.tokenize(w)) != 1]
    if unsplit:
        raise RuntimeError(f"T5 tokenizer splits corpus words {unsplit[:5]}")
    return tok
