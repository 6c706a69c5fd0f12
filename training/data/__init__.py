"""Datasets: image folders with tag captions, the caption pipeline, buckets and caches."""
