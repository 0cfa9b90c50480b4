"""Edge export: ONNX conversion, optimisation, quantisation and a standalone bundle."""
