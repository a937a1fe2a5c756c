"""Offline trainer, datasets and evaluation harness."""
