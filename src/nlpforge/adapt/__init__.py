"""Adapting a model with few parameters or few labels: LoRA adapters (lora.py), and the few-shot
methods and their K-shot protocol."""
