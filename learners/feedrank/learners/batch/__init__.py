"""Batch training of the two-tower and the ranker from labelled examples."""
