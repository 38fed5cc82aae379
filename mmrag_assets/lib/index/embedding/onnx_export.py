"""Export a BERT sentence encoder (a sentence-transformers folder: ``config.json``,
``model.safetensors``, ``tokenizer.json``, mean pooling) to an ONNX graph for ONNX Runtime.

Run once per model content (``onnx_encoder.py`` calls it in a subprocess and caches the result by
content hash), never on a query or index path that finds the cache:

    python -m mmrag_assets.lib.index.embedding.onnx_export SRC_DIR OUT.onnx --quantize int8

Steps, all from well-kept libraries: transformers loads the weights (eager attention, so the
graph traces), ``torch.onnx.export`` writes the graph (dynamic batch and sequence axes), ONNX
Runtime's transformer optimizer fuses it (EmbedLayerNormalization and BiasGelu; its fused
Attention and SkipLayerNormalization are left out: without them the int8 graph took 11.8 instead of
13.5 ms of CPU per 64-word window, and its lowest cosine to sentence-transformers rose from 0.985 to
0.989), and ``quantize_dynamic`` turns the weights to int8 per output channel (activations
quantized per call). Measured on all-MiniLM-L6-v2 against sentence-transformers: float32 graph max
|diff| 2e-7; int8 per-channel cosine mean 0.993, min 0.982 over 300 windows of real manuals, at 15.7
against 55.6 ms of CPU per 64-word window, one thread each (bench/index_speed.py; per-tensor int8
was mean 0.948, min 0.86 over 260 texts). The graph's output is the last hidden state
``(batch, seq, hidden)``; pooling and normalisation happen in numpy (``onnx_encoder.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from pathlib import Path

RECIPE = "bert-meanpool-ortopt-v2"  # bump when the steps below change what is written


def export(src: Path, out: Path, quantize: str) -> None:
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModel

    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_type") != "bert":
        raise SystemExit(f"{src}: model_type {cfg.get('model_type')!r}: only BERT encoders are exported")
    torch.set_num_threads(1)
    model = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tt = torch.zeros_like(input_ids)
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=tt
            ).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw, fused = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx"
        axes = {
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "hidden": {0: "batch", 1: "seq"},
        }
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(Hidden(model), (ids, torch.ones_like(ids)), str(raw), dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask"], output_names=["hidden"], dynamic_axes=axes)  # fmt: skip
        fusions = FusionOptions("bert")
        fusions.enable_attention = fusions.enable_skip_layer_norm = False  # measured: see the docstring
        opt = optimize_model(str(raw), model_type="bert", num_heads=int(cfg["num_attention_heads"]),
                             hidden_size=int(cfg["hidden_size"]), opt_level=1, optimization_options=fusions)  # fmt: skip
        opt.save_model_to_file(str(fused))
        tmp_out = Path(tmp) / "model.onnx"
        if quantize == "int8":
            quantize_dynamic(str(fused), str(tmp_out), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
        elif quantize == "fp32":
            fused.replace(tmp_out)
        else:
            raise SystemExit(f"quantize={quantize!r}: int8 or fp32")
        os.replace(tmp_out, out)  # readers never see a half-written graph


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--quantize", default="int8", choices=["int8", "fp32"])
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    export(args.src, args.out, args.quantize)


if __name__ == "__main__":
    main()
