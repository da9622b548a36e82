"""Exported forms of limner models for fast inference (ONNX; onnxruntime runs them through
limner.pipelines.onnx_backend, re-exported here)."""

from limner.export.onnx import export_onnx
from limner.pipelines.onnx_backend import OnnxGenerator, OnnxTextEncoder, load_onnx_parts

__all__ = ["OnnxGenerator", "OnnxTextEncoder", "export_onnx", "load_onnx_parts"]
