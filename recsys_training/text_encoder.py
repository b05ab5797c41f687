"""The MiniLM sentence encoder run by ONNX Runtime instead of torch: the same transformer,
exported once from the installed model and kept in a cache directory, tokenised by the model's
own ``tokenizer.json``, mean-pooled and normalised as the sentence-transformers model is. The
vectors equal torch's to float rounding (tested). Once the export exists, loading it imports
neither torch nor transformers; its speed against torch is measured in the README ("Pipeline").

With ``weights="int8"`` the export's weights are quantised to int8 once (ONNX Runtime's dynamic
quantisation, one scale per output channel, 7-bit weights) and kept beside it: faster, with vectors near the
float ones but not equal (README, "Text encoder weights").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
WEIGHTS = ("float32", "int8")


class OnnxSentenceEncoder:
    """``encode`` like a sentence-transformers model with Transformer -> mean Pooling ->
    Normalize modules, for what ``embed_texts`` asks of it."""

    def __init__(self, session, tokenizer, weights: str = "float32") -> None:
        self.session, self.tokenizer, self.weights = session, tokenizer, weights
        self.backend = "onnxruntime" if weights == "float32" else f"onnxruntime-{weights}"
        self._inputs = {i.name for i in session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int = 128, **_) -> np.ndarray:
        """(len(texts), dimension) float32, L2-normalised. Texts are batched by length, as
        sentence-transformers batches them, so a batch pads little."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = None
        for start in range(0, len(texts), batch_size):
            chunk = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in chunk])
            tokens = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                      "token_type_ids": [e.type_ids for e in encodings]}
            feed = {name: np.asarray(tokens[name], dtype=np.int64) for name in INPUTS if name in self._inputs}
            hidden = self.session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), np.float32)
            out[chunk] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out if out is not None else np.empty((0, 0), np.float32)


def mean_pooled_length(model_dir: Path) -> int | None:
    """The model's token limit when its modules are Transformer -> mean Pooling -> Normalize (what
    ``OnnxSentenceEncoder`` reproduces), read from its configuration files; None otherwise."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
        pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
        length = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    modes = {key for key, on in pooling.items() if key.startswith("pooling_mode") and on is True}
    if kinds != ["Transformer", "Pooling", "Normalize"] or modes != {"pooling_mode_mean_tokens"}:
        return None
    return int(length)


def _tokenizer(model_dir: Path, max_length: int):
    """The model's fast tokenizer from its ``tokenizer.json``, truncating at ``max_length`` tokens
    and padding to the longest text of a batch, as sentence-transformers calls it."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    padding = tokenizer.padding or {}
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]"),
                             pad_type_id=padding.get("pad_type_id", 0))
    return tokenizer


def _cache_key(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        digest.update(path.read_bytes())
    digest.update(f"{version('torch')}|{version('transformers')}|{OPSET}".encode())
    return digest.hexdigest()[:24]


def _export(model, target: Path) -> None:
    import torch

    transformer = model[0].model.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state

    example = model.tokenizer(["an example", "another, longer example text"], padding=True, return_tensors="pt")
    scratch = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")  # concurrent loaders never see half a file
    try:
        with torch.no_grad():
            torch.onnx.export(LastHiddenState(), tuple(example[name] for name in INPUTS), str(scratch),
                              input_names=list(INPUTS), output_names=["last_hidden_state"],
                              dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")},
                              opset_version=OPSET, dynamo=False)
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)


def _quantise(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        # 7-bit weights (reduce_range): int8 products on CPUs without VNNI can saturate at 8 bits
        quantize_dynamic(str(source), str(scratch), per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)


def onnx_encoder(model_dir: Path, cache_dir: Path, load_model: Callable[[], object],
                 threads: int | None = None, weights: str = "float32") -> OnnxSentenceEncoder | None:
    """The sentence-transformers model in ``model_dir`` run by ONNX Runtime, its export kept in
    ``cache_dir`` by the model files' digest (and, for ``weights="int8"``, its quantised copy);
    ``load_model`` gives the torch model and is called only when there is no export yet. None when
    the model's modules are not Transformer -> mean Pooling -> Normalize, or ONNX Runtime is
    missing or fails, and the caller keeps torch."""
    if weights not in WEIGHTS:
        raise ValueError(f"text encoder weights {weights!r}: use one of {WEIGHTS}")
    max_length = mean_pooled_length(model_dir)
    if max_length is None:
        return None
    try:
        import onnxruntime as ort

        cache_dir.mkdir(parents=True, exist_ok=True)
        exported = cache_dir / f"minilm-{_cache_key(model_dir)}.onnx"
        if not exported.exists():
            _export(load_model(), exported)
        target = exported
        if weights == "int8":
            target = exported.with_name(f"{exported.stem}-int8-7bit.onnx")
            if not target.exists():
                _quantise(exported, target)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
        return OnnxSentenceEncoder(session, _tokenizer(model_dir, max_length), weights)
    except Exception as error:  # noqa: BLE001 - ONNX is an optimisation, never a reason to fail
        log.warning("text encoder not run by ONNX Runtime (%s); using torch", error)
        return None
