"""The images of a dataset folder, as the trainer will find them, and reading one safely."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..training.data.folders import IMAGE_EXTENSIONS, expand_folder, list_images
from ..training.data.images import open_rgb


def dataset_images(folder: str | Path) -> list[Path]:
    """Images in `folder` and its kohya `N_name` subfolders (the trainer's layout), sorted; a clear
    error for a missing folder, a file, or a folder with no images."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"folder {str(root)!r} is not a folder")
    images = [image for sub, _ in expand_folder(str(root), None) for image in list_images(sub)]
    if not images:
        kinds = ", ".join(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
        raise ValueError(f"folder {str(root)!r} has no images ({kinds}) in it or in kohya `N_name` subfolders")
    return images


def read_image(path: Path) -> Image.Image:
    """Upright RGB, transparency on white; ValueError naming the file when it cannot be decoded."""
    return open_rgb(str(path))


def caption_path(image: Path, extension: str = ".txt") -> Path:
    return image.with_suffix(extension if extension.startswith(".") else f".{extension}")
