"""Compression: distillation losses, structured pruning, quantization and export."""
