"""Loading ONNX graphs and reasoning about their shapes symbolically."""
