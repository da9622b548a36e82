"""Exported forms of limner models for fast inference (ONNX with onnxruntime)."""

from limner.export.onnx import OnnxGenerator, OnnxTextEncoder, export_onnx, load_onnx_parts

__all__ = ["OnnxGenerator", "OnnxTextEncoder", "export_onnx", "load_onnx_parts"]
