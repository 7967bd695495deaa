"""Lowering of ONNX ops to SQL plans, one module per op family (see registry.py)."""
