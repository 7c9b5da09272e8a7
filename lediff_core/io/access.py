"""Which files may be opened for reading: checked where each file is opened, not only its folder.

Two rules, ComfyUI's own:

- **Containment.** A file named relative to a folder ComfyUI serves to its users (``input/``,
  ``output/``, ``temp/``) must resolve into that folder after symbolic links are followed
  (``path_inside``): a link in the input folder (or in a subfolder, an EXR sequence's frame) that
  points elsewhere on the disk is refused, as ComfyUI 0.30.0's ``folder_paths.get_annotated_filepath``
  refuses one for Load Image. A link whose target lies inside the folder is fine. Model folders are
  the exception ComfyUI makes too: a link placed in ``models/`` is its administrator's choice (a
  download kept on another disk) and is followed, as ``folder_paths.get_full_path`` follows it, so the
  model resolver (``lediff_core.model.weights.resolve_model``) checks the names it is given, not where
  links lead. Folders given on a command line (the batch runner's ``--inputs``, the recipe's ``--hdr``)
  are the operator's, like a model folder.
- **Regular files only.** A FIFO, socket, device or folder under an image's name is refused by name
  from ``os.stat`` alone, before anything opens it (``check_readable``): opening a FIFO blocks until a
  writer comes, and reading a device may never end. ``os.stat`` follows links, so a link to a FIFO
  is refused too.
"""

from __future__ import annotations

import os
import stat

from .. import LEDiffError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


class FileAccessError(LEDiffError, ValueError):
    """A path that is not opened: not a regular file, or leading outside the folder it was named in.
    The message names the file, why, and the fix."""


def path_inside(folder: str, path: str) -> bool:
    """True when ``path`` resolves to ``folder`` or somewhere below it (symlinks resolved on both).
    A path that cannot be resolved (a NUL byte in it) is not inside."""
    try:
        folder = os.path.realpath(folder)
        path = os.path.realpath(path)
        return os.path.commonpath([folder, path]) == folder
    except ValueError:
        return False


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO (named pipe)", "a folder", ...)."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def check_readable(path: str, root: str | None = None, *, name: str | None = None,
                   folder: str = "the input folder") -> os.stat_result:
    """Check, without opening it, that ``path`` may be opened for reading; return its ``os.stat``.

    With ``root``, ``path`` must resolve into ``root`` after links are followed (``folder`` is how
    messages call ``root``). Then it must be a regular file (links followed): a FIFO, socket,
    device or folder raises FileAccessError naming it (``name``, default ``path``) and what it is.
    A missing file raises FileNotFoundError naming it; a link whose target is missing says so.
    """
    label = path if name is None else name
    if root is not None and not path_inside(root, path):
        raise FileAccessError(
            f"{label!r} leads outside {folder} (through a symbolic link or '..'): files are read only "
            f"from inside {folder}; copy the file itself there"
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileAccessError(f"{label!r} is a symbolic link to a file that does not exist; "
                                  "replace it with the file itself") from None
        raise FileNotFoundError(2, f"no file {label!r}", path) from None
    if not stat.S_ISREG(st.st_mode):
        raise FileAccessError(
            f"{label!r} is {file_kind(st.st_mode)}, not a regular file: refused without opening it "
            "(reading it could wait forever or never end); replace it with the file itself"
        )
    return st
