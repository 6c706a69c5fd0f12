"""Datasets: image folders with tag captions, the caption pipeline, buckets and caches."""

from .captions import CaptionConfig, process_caption
from .dataset import BucketConfig, DatasetConfig, DatasetIndex, FolderSpec, ImageRecord, scan_dataset
from .images import TrainingImage, load_training_image
from .latent_cache import LatentCache, precompute_latents
from .loader import Batch, BatchSource
from .text_cache import caption_variants, check_text_cache_allowed, choose_variant

__all__ = [
    "Batch", "BatchSource", "BucketConfig", "CaptionConfig", "DatasetConfig", "DatasetIndex", "FolderSpec",
    "ImageRecord", "LatentCache", "TrainingImage", "caption_variants", "check_text_cache_allowed",
    "choose_variant", "load_training_image", "precompute_latents", "process_caption", "scan_dataset",
]
