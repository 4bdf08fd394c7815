"""Hyperparameter sweeps: search spaces, samplers, early-termination policies, HyperDrive files."""
