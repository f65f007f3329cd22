"""Export a sentence-transformers model folder to ONNX for the torch-free query path.

The exported graph maps token ids straight to the sentence embedding: the transformer,
pooling and any later modules listed in ``modules.json`` are traced from sentence-transformers
itself, and an L2 normalisation is appended when the model has no ``Normalize`` module, so
the output equals ``SentenceTransformer.encode(..., normalize_embeddings=True)``. The query
side (:mod:`indexer.onnx_embedder`) then needs only ``tokenizers``, ``onnxruntime`` and numpy.

Export needs torch, sentence-transformers and the ``onnx`` package: torch's TorchScript-based
exporter (``dynamo=False``) serialises the graph through ``onnx``; the newer dynamo exporter
would also need ``onnxscript``. None of them is needed at query time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

from indexer.embedder import ModelError, weights_fingerprint
from indexer.scratch import remove_leftovers

ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "onnx_config.json"
OPSET = 17
OUTPUT_NAME = "sentence_embedding"
PRECISIONS = ("fp32", "int8")
"""``fp32``: the traced model as is. ``int8``: its weight MatMuls quantized per channel with
ONNX Runtime's dynamic quantization (activations quantized on the fly), checked against fp32
(``INT8_RECIPE``; ``INT8_MIN_MEAN_COSINE``): faster, at vectors close to fp32's (bench/speed.py)."""
INT8_RECIPE = 2
"""How int8 exports are made, recorded in every int8 index so that vectors of two recipes are
never mixed. 1: every weight MatMul quantized, unchecked. 2: checked against fp32 on
``FIDELITY_TEXTS``; when not faithful, the feed-forward down-projections stay fp32
(:func:`activation_fed_matmuls`); when still not faithful, no int8 export."""
INT8_MIN_MEAN_COSINE = 0.98
"""An int8 export must keep ``FIDELITY_TEXTS`` at this mean cosine to its fp32 export or better.
all-MiniLM-L6-v2 keeps 0.99 with every MatMul quantized; all-mpnet-base-v2 drops to 0.90, and
keeps 0.99 with its down-projections at fp32."""
INT8_MIN_COSINE = 0.95
"""... and no text of ``FIDELITY_TEXTS`` below this (MiniLM's lowest: 0.99)."""
FIDELITY_TEXTS = (
    "Who is the executive director of EleutherAI?",
    "Open-source AI models let startups build products without paying for access to a closed API.",
    "The city council approved the budget on Tuesday after a four-hour debate.",
    "Vitamin D supplementation reduces the risk of respiratory infections in children.",
    "0-dimensional biomaterials show inductive properties.",
    "A leaked internal memo argued that neither Google nor OpenAI has a moat.",
    "Shares fell 4.2% in early trading as investors weighed the quarterly results.",
    "How do transformer language models handle long documents?",
    "The enzyme is expressed in hepatocytes and regulates glucose metabolism in vivo.",
    "Meta released the weights of LLaMA to researchers in February 2023.",
    "Heavy rain is expected across the region through the weekend, forecasters said.",
    "Why open-source AI models are good for the world",
    "Mutations in BRCA1 increase the lifetime risk of breast and ovarian cancer.",
    "The ferry resumed service on Monday.",
    "Critics dwell on the dangers and underestimate the benefits.",
    "In a randomized trial of 1,204 patients, the drug lowered mortality by 12 percent (p < 0.01).",
    "“Meta AI has done a really great job training and releasing models to the research community,” "
    "says the executive director of a nonprofit lab, who divides her time between the lab and a consulting "
    "firm. A leaked memo, too, highlights the company's crucial role, and the company confirmed that the memo "
    "was written by one of its engineers, though it did not comment further.",
    "Chronic inflammation is associated with insulin resistance in adipose tissue. Here we show that "
    "macrophage-derived cytokines suppress the expression of glucose transporters in adipocytes, and that "
    "mice lacking the receptor are protected from diet-induced obesity and glucose intolerance, suggesting "
    "a therapeutic target for type 2 diabetes.",
    "The port authority said on Friday that container volumes rose for the third month in a row, helped by "
    "a recovery in exports of machinery and cars, while imports of energy fell as prices stayed high; "
    "officials expect the growth to slow next year as new tariffs take effect and shipping rates climb.",
)
"""Short and long, news and science, questions and statements: the texts an int8 export is
checked on (a fixed sample, so the check does not depend on the corpus being built)."""
_FEED_FORWARD_ACTIVATIONS = frozenset({"Erf", "Gelu", "FastGelu", "BiasGelu", "Tanh", "Relu"})

_EXPORT_SCRATCH = re.compile(r"\.[0-9a-f]{32}[\w-]*\.(?P<pid>[0-9]+)")
"""``.<export folder>.<pid>``: where :func:`ensure_export` writes an export before renaming it."""

_TOKEN_INPUTS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
"""Model input name -> attribute of a ``tokenizers.Encoding`` that feeds it."""

_TRACE_TEXTS = ["query", "a longer passage, so that the traced batch contains padding"]

_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def read_pipeline(model_path: Path) -> dict:
    """The module types, pooling mode and normalisation that ``modules.json`` declares."""
    modules_file = model_path / "modules.json"
    if not modules_file.is_file():
        raise ModelError(f"{model_path}: not a sentence-transformers folder (no modules.json)")
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    types = [module["type"].rsplit(".", 1)[-1] for module in modules]
    pooling = [module for module in modules if module["type"].endswith(".Pooling")]
    if not pooling:
        raise ModelError(f"{model_path}: modules.json has no Pooling module")
    pooling_config = json.loads(
        (model_path / pooling[0]["path"] / "config.json").read_text(encoding="utf-8")
    )
    mode = pooling_config.get("pooling_mode") or [
        name for key, name in _LEGACY_POOLING_KEYS.items() if pooling_config.get(key)
    ] or "mean"
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    return {"modules": types, "pooling_mode": mode, "normalize_module": "Normalize" in types}


def export_onnx(*, model_path: Path, out_dir: Path, max_seq_length: int) -> dict:
    """Write ``model.onnx``, ``tokenizer.json`` and ``onnx_config.json`` to ``out_dir``.

    The graph takes the tokenizer's int64 ``[batch, sequence]`` inputs (both axes dynamic) and
    returns unit-length float32 rows. The tokenizer truncates to ``max_seq_length`` tokens,
    special tokens included, and pads to the longest text of a batch, as sentence-transformers
    does. The export is checked against sentence-transformers before the config is written.
    Returns the config.
    """
    import numpy as np
    import onnxruntime
    import tokenizers
    import torch
    from sentence_transformers import SentenceTransformer

    pipeline = read_pipeline(model_path)
    model = SentenceTransformer(str(model_path), device="cpu").eval()
    max_positions = getattr(model[0].model.config, "max_position_embeddings", max_seq_length)
    if not 2 <= max_seq_length <= max_positions:
        raise ModelError(f"max_seq_length {max_seq_length} is outside 2..{max_positions}")
    model.max_seq_length = max_seq_length

    features = model.preprocess(_TRACE_TEXTS)
    names = [name for name in _TOKEN_INPUTS if name in features]

    class SentenceEmbedding(torch.nn.Module):
        """Positional token tensors -> unit-length sentence embeddings."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            embedding = self.model(dict(zip(names, inputs)))["sentence_embedding"]
            if pipeline["normalize_module"]:
                return embedding
            return torch.nn.functional.normalize(embedding, p=2, dim=1)

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / ONNX_FILE
    axes = {0: "batch", 1: "sequence"}
    wrapper = SentenceEmbedding()
    inputs = tuple(features[name] for name in names)
    with torch.no_grad(), warnings.catch_warnings():
        # The trace freezes shape checks that hold for every input (mask width equals sequence
        # length, indices come from arange) and the TorchScript exporter says it is deprecated;
        # none of it is actionable, and the check against ONNX Runtime below guards the result.
        warnings.simplefilter("ignore")
        expected = wrapper(*inputs).numpy()
        torch.onnx.export(
            wrapper,
            inputs,
            str(onnx_path),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={**{name: axes for name in names}, OUTPUT_NAME: {0: "batch"}},
        )

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    graph_inputs = [node.name for node in session.get_inputs()]
    got = session.run([OUTPUT_NAME], {name: features[name].numpy() for name in graph_inputs})[0]
    if not np.allclose(got, expected, atol=1e-5):
        raise ModelError(f"ONNX export of {model_path} does not reproduce sentence-transformers")

    hf_tokenizer = model.tokenizer
    tokenizer = tokenizers.Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.enable_truncation(
        max_seq_length, strategy="longest_first", direction=hf_tokenizer.truncation_side
    )
    tokenizer.enable_padding(
        direction=hf_tokenizer.padding_side,
        pad_id=hf_tokenizer.pad_token_id,
        pad_type_id=hf_tokenizer.pad_token_type_id,
        pad_token=hf_tokenizer.pad_token,
    )
    tokenizer.save(str(out_dir / TOKENIZER_FILE))

    config = {
        **pipeline,
        "normalize": True,
        "max_seq_length": max_seq_length,
        "dimension": int(got.shape[1]),
        "opset": OPSET,
        "onnx_file": ONNX_FILE,
        "tokenizer_file": TOKENIZER_FILE,
        "inputs": {name: _TOKEN_INPUTS[name] for name in graph_inputs},
        "output": OUTPUT_NAME,
        "fingerprint": weights_fingerprint(model_path),
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config


def cache_root() -> Path:
    """Where derived model files live: ``$SEMINDEX_CACHE`` or ``~/.cache/semindex``."""
    return Path(os.environ.get("SEMINDEX_CACHE") or Path.home() / ".cache" / "semindex")


def export_folder(model_id: str, fingerprint: str, precision: str = "fp32") -> Path:
    """The cache folder of the ONNX export of this model id with these weights."""
    import hashlib

    name = hashlib.sha256(f"{model_id}\n{fingerprint}".encode()).hexdigest()[:32]
    return cache_root() / "onnx" / (name if precision == "fp32" else f"{name}-{precision}-r{INT8_RECIPE}")


def activation_fed_matmuls(onnx_path: Path) -> list[str]:
    """Names of the weight MatMuls fed by an activation function within four nodes: a
    transformer's feed-forward down-projections. Their inputs (GELU outputs) carry a few
    outlier values that per-tensor dynamic quantization of activations crushes."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {output: node for node in graph.node for output in node.output}
    weights = {initializer.name for initializer in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        frontier = [node.input[0]]
        for _ in range(4):
            parents = [producer[name] for name in frontier if name in producer]
            if any(parent.op_type in _FEED_FORWARD_ACTIVATIONS for parent in parents):
                found.append(node.name)
                break
            frontier = [name for parent in parents for name in parent.input]
    return found


def fidelity(source: Path, quantized: Path) -> tuple[float, float]:
    """(mean, min) cosine between the fp32 export in ``source`` and ``quantized`` over ``FIDELITY_TEXTS``."""
    import numpy as np

    from indexer.onnx_embedder import OnnxEmbedder

    texts = list(FIDELITY_TEXTS)
    cosines = np.sum(OnnxEmbedder(source).encode(texts) * OnnxEmbedder(quantized).encode(texts), axis=1)
    return float(cosines.mean()), float(cosines.min())


def quantize_export(source: Path, out_dir: Path) -> dict:
    """Write an int8 copy of the fp32 export in ``source`` to ``out_dir`` (``INT8_RECIPE``);
    returns its config, which records the fidelity and the MatMuls kept at fp32. Raises
    ``ModelError`` when no int8 copy keeps ``INT8_MIN_MEAN_COSINE`` and ``INT8_MIN_COSINE``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    base = {**json.loads((source / CONFIG_FILE).read_text(encoding="utf-8")), "precision": "int8",
            "int8_recipe": INT8_RECIPE}
    # onnxruntime writes a shape-inferred copy beside the model it quantizes and deletes it
    # after: quantize a private link, so two processes quantizing one export never collide
    private = out_dir / f"fp32-{ONNX_FILE}"
    try:
        os.link(source / ONNX_FILE, private)
    except OSError:
        shutil.copyfile(source / ONNX_FILE, private)
    tried: list[str] = []
    try:
        for attempt in range(2):
            kept = activation_fed_matmuls(source / ONNX_FILE) if attempt else []
            if attempt and not kept:
                break
            with warnings.catch_warnings(), _quiet_root_logger():
                warnings.simplefilter("ignore")
                quantize_dynamic(str(private), str(out_dir / ONNX_FILE), per_channel=True,
                                 weight_type=QuantType.QInt8, nodes_to_exclude=kept)
            config = {**base, "fp32_matmuls": kept}
            (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            mean, least = fidelity(source, out_dir)
            tried.append(f"{mean:.3f} (lowest {least:.3f}) with {len(kept)} MatMuls at fp32")
            if mean >= INT8_MIN_MEAN_COSINE and least >= INT8_MIN_COSINE:
                config["fidelity"] = {"mean_cosine": round(mean, 4), "min_cosine": round(least, 4)}
                (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
                return config
        raise ModelError(f"int8 quantization changes this model's vectors too much (mean cosine to fp32 "
                         f"{'; '.join(tried)}; needs {INT8_MIN_MEAN_COSINE}, lowest {INT8_MIN_COSINE}): use --precision fp32")
    finally:
        private.unlink(missing_ok=True)


@contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs advice ("run pre-processing") with ``logging.warning``,
    which would also give the root logger a stderr handler for good (``basicConfig``), and
    every later library message would print: bm25s logs at DEBUG. A NullHandler holds the
    root's place while it runs."""
    import logging

    root, placeholder = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.setLevel(logging.ERROR)
    root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)
        root.setLevel(level)


def ensure_export(
    *, model_id: str, model_path: Path, fingerprint: str, max_seq_length: int, precision: str = "fp32"
) -> Path:
    """The ONNX export of these weights at ``precision``, made once per machine (written
    aside, then renamed; the scratch folders of killed exports are removed first); an int8
    export is quantized from the fp32 one."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    folder = export_folder(model_id, fingerprint, precision)
    if (folder / CONFIG_FILE).is_file():
        return folder
    source = None
    if precision != "fp32":
        source = ensure_export(model_id=model_id, model_path=model_path, fingerprint=fingerprint, max_seq_length=max_seq_length)
    remove_leftovers(folder.parent, pattern=_EXPORT_SCRATCH)
    scratch = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        if source is not None:
            config = quantize_export(source, scratch)
        else:
            config = export_onnx(model_path=model_path, out_dir=scratch, max_seq_length=max_seq_length)
        if config.get("fingerprint") != fingerprint:
            raise ModelError(f"{model_path}: weights changed during the ONNX export")
        try:
            os.rename(scratch, folder)
        except OSError:
            if not (folder / CONFIG_FILE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if source is not None:  # the unchecked export recipe 1 made, never used again
        shutil.rmtree(folder.with_name(f"{source.name}-{precision}"), ignore_errors=True)
    return folder

