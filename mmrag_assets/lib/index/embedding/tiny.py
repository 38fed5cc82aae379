"""The ``model=tiny`` tier: tiny randomly initialised ColQwen2.5 / ColPali / ColSmol / ColQwen3 models,
built fully offline.

They have the real architectures (Qwen2.5-VL, PaliGemma, Idefics3 backbones with the
colpali-engine projection heads, dim 128; Qwen3-VL with ColQwen3's 320-d head) at a few hundred
thousand parameters, and are saved
with ``save_pretrained`` so that they load through exactly the ``from_pretrained(local_dir)``
path real weights take. Their embeddings carry no meaning: they exist to exercise shapes,
batching, storage and scoring end to end without a download.

``build_tiny_model`` is idempotent: a marker file records the arch, seed, builder version and
the weights' sha256; a directory whose marker is missing, stale or does not match the weights
is rebuilt. Builds go to a temporary sibling directory that is renamed into place, so two
processes building at once never see a half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mmrag_assets.config import VISUAL_DIMS

if TYPE_CHECKING:
    import torch

TinyArch = Literal["colqwen2_5", "colpali", "colsmol", "colqwen3"]
TINY_ARCHS: tuple[TinyArch, ...] = ("colqwen2_5", "colpali", "colsmol", "colqwen3")
TINY_DIMS: dict[str, int] = {a: VISUAL_DIMS[a] for a in TINY_ARCHS}  # fixed by each arch's head
MARKER = "mmrag_tiny.json"
BUILDER_VERSION = 1  # bump when the tiny configs change: existing builds are then rebuilt
WEIGHTS = "model.safetensors"

# Words the tiny BPE tokenizers are trained on (any text still tokenizes: byte-level / byte fallback).
_CORPUS = [
    "What is the revenue in 2023?",
    "Show the table of results.",
    "Describe the image.",
    "the quick brown fox jumps over the lazy dog",
    "invoice total amount due date page figure chart",
    "Query: what is shown in this chart?",
    "The quarterly revenue grew by five percent.",
    "how to plot a histogram",
    "user assistant",
    "A red square and a blue circle.",
] * 20


def _bytelevel_bpe(special_tokens: list[str], vocab_size: int = 400, corpus: list[str] | None = None) -> Any:
    """A tiny byte-level BPE (GPT-2 / Qwen style) trained on ``corpus`` (default ``_CORPUS``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS if corpus is None else corpus, trainer=trainer)
    return tok


_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _qwen_tokenizer() -> tuple[Any, dict[str, int]]:
    """A tiny byte-level BPE with the Qwen2/Qwen3 special tokens, left padding; and the specials' ids."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_bytelevel_bpe(_QWEN_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        model_max_length=32768,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
    )
    return tokenizer, {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}


def qwen_processor(
    min_pixels: int = 4 * 28 * 28, max_pixels: int = 64 * 28 * 28
) -> tuple[Any, dict[str, int]]:
    """A ColQwen2.5 processor with a tiny BPE tokenizer and real Qwen2-VL image processing (patch 14,
    merge 2, ``min_pixels..max_pixels``); also returns the special tokens' ids."""
    from colpali_engine.models import ColQwen2_5_Processor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer, ids = _qwen_tokenizer()
    img_kw: dict[str, Any] = {
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
    }
    processor = ColQwen2_5_Processor(
        image_processor=Qwen2VLImageProcessor(**img_kw),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**img_kw),
    )
    return processor, ids


def _colqwen2_5() -> tuple[Any, Any]:
    from colpali_engine.models import ColQwen2_5
    from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig

    processor, ids = qwen_processor()  # 4..64 visual tokens per image keeps it fast
    tokenizer = processor.tokenizer
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # head_dim 16 -> rotary half-dim 8 = sum(mrope_section)
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "out_hidden_size": 64,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return ColQwen2_5(config), processor


def _colsmol() -> tuple[Any, Any]:
    from colpali_engine.models import ColIdefics3, ColIdefics3Processor
    from transformers import Idefics3Config, Idefics3ImageProcessor, PreTrainedTokenizerFast

    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<end_of_utterance>",
        "<fake_token_around_image>",
        "<image>",
        "<global-img>",
    ] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_bytelevel_bpe(specials),
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.add_tokens(specials, special_tokens=True)
    # 64 px tiles, patch 16 -> 16 patches, pixel shuffle x2 -> 4 <image> tokens per tile;
    # up to 2x2 tiles + a global image
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 128}, max_image_size={"longest_edge": 64}, do_image_splitting=True
    )
    processor = ColIdefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
    tok = processor.tokenizer
    config = Idefics3Config(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tok),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        scale_factor=2,
        image_token_id=processor.image_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return ColIdefics3(config), processor


def _colpali() -> tuple[Any, Any]:
    from colpali_engine.models import ColPali, ColPaliProcessor
    from transformers import GemmaTokenizer, PaliGemmaConfig, SiglipImageProcessor

    # Gemma-style tokenizer with byte fallback: specials + 256 byte tokens + single characters
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for ch in "\u2581abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!:;'-":
        vocab.setdefault(ch, len(vocab))
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[])
    image_processor = SiglipImageProcessor(size={"height": 64, "width": 64}, image_seq_length=16)
    image_processor.image_seq_length = 16  # (64 / 16) ** 2 patches
    processor = ColPaliProcessor(
        image_processor=image_processor, tokenizer=tokenizer
    )  # adds <image>, <loc>, <seg>
    tok = processor.tokenizer
    config = PaliGemmaConfig(
        text_config={
            "model_type": "gemma",
            "vocab_size": len(tok),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
            "projection_dim": 64,
        },
        projection_dim=64,
        hidden_size=64,
        image_token_index=processor.image_token_id,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
    )
    return ColPali(config), processor


def _colqwen3() -> tuple[Any, Any]:
    """ColQwen3 (Qwen3-VL backbone: 16-px patches merged 2x2, learned vision position embeddings,
    DeepStack features of a vision layer added to the first text layer, interleaved M-RoPE) with
    the real ColQwen3Processor and Qwen3-VL's video processor; 4..64 visual tokens per image."""
    from colpali_engine.models import ColQwen3, ColQwen3Processor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl import Qwen3VLConfig
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer, ids = _qwen_tokenizer()
    tile = 16 * 2  # patch x merge: one visual token per 32x32 pixels
    kw: dict[str, Any] = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2}
    processor = ColQwen3Processor(
        image_processor=Qwen2VLImageProcessor(
            **kw,
            min_pixels=4 * tile * tile,
            max_pixels=64 * tile * tile,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(
            **kw, size={"shortest_edge": 4 * tile * tile, "longest_edge": 64 * tile * tile}
        ),
    )
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            # head_dim 16 -> rotary half-dim 8 = sum(mrope_section), sections interleaved as in Qwen3-VL
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,  # an 8x8 grid, interpolated to any image size
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return ColQwen3(config), processor


_BUILDERS = {"colqwen2_5": _colqwen2_5, "colpali": _colpali, "colsmol": _colsmol, "colqwen3": _colqwen3}


def projection_layer(model: Any) -> torch.nn.Linear:
    """The colpali-engine head that maps hidden states to the multivector space (128-d; 320-d for ColQwen3)."""
    return model.linear if hasattr(model, "linear") else model.custom_text_proj


def build_in_memory(arch: TinyArch, seed: int = 0) -> tuple[Any, Any]:
    """``(model, processor)`` of a tiny random ``arch``; deterministic for a given seed."""
    import torch

    if arch not in _BUILDERS:
        raise ValueError(f"unknown tiny arch {arch!r}: expected one of {', '.join(TINY_ARCHS)}")
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(seed)
        model, processor = _BUILDERS[arch]()
        # Random init zeroes the pad embedding and the projection bias, so left-padded positions
        # give 0 / 0 = NaN in the model's L2 norm; a small bias keeps them finite (real weights
        # never hit this).
        with torch.no_grad():
            torch.nn.init.normal_(projection_layer(model).bias, std=0.02)
    model.eval()
    if getattr(model, "dim", 128) != TINY_DIMS[arch]:
        raise RuntimeError(f"tiny {arch} projects to {model.dim} dims, expected {TINY_DIMS[arch]}")
    return model, processor


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_valid(out_dir: Path, arch: str, seed: int) -> bool:
    try:
        marker = json.loads((out_dir / MARKER).read_text())
        weights = out_dir / WEIGHTS
        return (
            marker.get("arch") == arch
            and marker.get("seed") == seed
            and marker.get("builder_version") == BUILDER_VERSION
            and (out_dir / "config.json").is_file()
            and weights.is_file()
            and marker.get("weights_sha256") == _sha256(weights)
        )
    except (OSError, ValueError, AttributeError):
        return False


def build_tiny_model(arch: TinyArch, out_dir: Path, seed: int = 0) -> Path:
    """Build (or reuse) a tiny random ``arch`` model + processor in ``out_dir``; returns ``out_dir``."""
    out_dir = Path(out_dir)
    if _is_valid(out_dir, arch, seed):
        return out_dir
    model, processor = build_in_memory(arch, seed)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        marker = {
            "arch": arch,
            "seed": seed,
            "builder_version": BUILDER_VERSION,
            "weights_sha256": _sha256(tmp / WEIGHTS),
            "params": sum(p.numel() for p in model.parameters()),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if out_dir.exists() and not _is_valid(out_dir, arch, seed):
            shutil.rmtree(out_dir, ignore_errors=True)  # stale or corrupt build
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not _is_valid(out_dir, arch, seed):  # not a concurrent builder's valid result
                raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return out_dir


# ---------------------------------------------------------------- generative Qwen2-VL (answers, reranker)
