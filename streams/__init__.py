"""Coldstream's live pipeline: Kafka events in, gated and explained cold-start candidates out."""
