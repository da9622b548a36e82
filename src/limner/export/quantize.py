"""int8 quantisation of an exported generator graph, with onnxruntime's own tools.

    dynamic  weights int8 ahead of time; each call scales its activations from their range
             (MatMul and Gemm as MatMulInteger, Conv as ConvInteger)
    static   weights and activations int8, the activation scales fixed beforehand from a
             calibration pass over the model's own captions (QDQ format, weights per channel,
             which onnxruntime fuses into QLinearConv / QLinearMatMul)

Why onnxruntime's quantiser: it is what runs the graph, so what it quantises is what it has
fast kernels for; PyTorch's eager int8 kernels would need a second runtime in the server.
On x86 CPUs without VNNI, u8 x s8 products can saturate (VPMADDUBSW sums two products into 16
bits), so static weights use a reduced 7-bit range there, as onnxruntime advises.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from limner.errors import ConfigError, DependencyError

QUANTIZE_MODES = ("dynamic", "static")


def quantize_generator(fp32_path: Path, out_path: Path, mode: str, calibration: list[dict[str, np.ndarray]] | None = None) -> None:
    """Write the int8 form of the fp32 generator graph `fp32_path` to `out_path`. `calibration`
    (static only): the inputs of a few generator calls ({"noise": (B, Z), "sentence": (B, D)})."""
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {QUANTIZE_MODES}, got {mode!r}")
    if mode == "static" and not calibration:
        raise ConfigError("static quantisation needs calibration inputs (the model's own captions)")
    try:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise DependencyError("int8 export needs onnxruntime and onnx: pip install onnxruntime onnx") from err
    prepared = out_path.with_name(f".{out_path.stem}.prepared.onnx")
    partial = out_path.with_name(f".{out_path.name}.partial")
    try:
        # constant folding and ONNX shape inference, which quantisation needs (onnxruntime's symbolic
        # inference does not complete on the generator's dynamic batch)
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(partial), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "MatMul", "Gemm"])
        else:
            quantize_static(str(prepared), str(partial), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            reduce_range=not _has_vnni())
        os.replace(partial, out_path)  # never a half-written graph under the final name
    finally:
        for leftover in (prepared, partial):
            leftover.unlink(missing_ok=True)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches = batches
        self._iterator: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = iter(self._batches)


def _has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags
