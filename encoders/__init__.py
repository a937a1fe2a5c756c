"""Encoders shared by training and serving: feature front ends, torch towers, ONNX runtime."""
