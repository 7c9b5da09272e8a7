"""The ``models/lediff`` model folder."""

from __future__ import annotations

import os

import folder_paths

FOLDER_NAME = "lediff"
EXTENSIONS = {".safetensors", ".bin", ".pth", ".pt", ".json", ""}


def register_model_folder() -> None:
    """Add ``models/lediff`` to ComfyUI's model folders, keeping paths added by
    ``extra_model_paths.yaml`` (which may have registered the name before us)."""
    default = os.path.join(folder_paths.models_dir, FOLDER_NAME)
    known = folder_paths.folder_names_and_paths.get(FOLDER_NAME)
    if known is None:
        folder_paths.folder_names_and_paths[FOLDER_NAME] = ([default], set(EXTENSIONS))
        return
    paths, extensions = known
    if default not in paths:
        paths.append(default)
    extensions.update(EXTENSIONS)
