"""Publishing files and folders without ever overwriting or leaving a partial one behind.

A file is written under a hidden temporary name in the destination folder and then hard-linked to
its final name: ``os.link`` fails if the name exists, so an existing output is never replaced, and
a failed write leaves only the temporary file, which is removed. A batch of files
(``write_numbered_files``) is written whole under temporary names before the first is published:
all of it appears, or none. A folder (an image sequence) is
filled under a hidden staging name beside its final place and renamed in one step that refuses an
existing name (``write_numbered_folder``, or ``write_new_folder`` for one fixed name). A program's
own small file that is meant to change (a pointer, a manifest) is replaced in one rename
(``replace_file``, ``replace_text_file``). Every temporary name is hidden and ends in ``.tmp``
(``is_temporary``): what a killed process left is recognised and removed (``remove_temporaries``).

What is published has the permissions an ordinary ``open()`` / ``mkdir()`` gets under the process
umask (0644 files and 0755 folders under umask 022, 0600 / 0700 under 077), whoever wrote it:
``tempfile.mkstemp`` creates 0600 files and some writers (safetensors 0.8's ``save_file``) create
0600 files whatever the umask, so every publisher gives the temporary file, or the staging folder
and everything in it, the umask's mode just before it is published (``publish_modes``). Only the
permission bits are set (a folder's inherited setgid bit stays), symbolic links are left alone,
and POSIX default ACLs are not consulted: the mode is ``0o666 & ~umask`` for files and
``0o777 & ~umask`` for folders.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_UMASK_LOCK = threading.Lock()
# the hidden names used beside a target while it is written: staging folders (.NAME.<random>.tmp)
# and temporary files (.NAME.<random>.tmp or .NAME.<random>.tmp.EXT)
_TEMPORARY = re.compile(r"\..+\.tmp(\.[A-Za-z0-9]+)?")


def process_umask() -> int:
    """The process's file mode creation mask, read without changing it where possible.

    Linux (4.7 and later) reports it in ``/proc/self/status`` ("Umask:"): reading that is free of
    races. Elsewhere the only way is ``os.umask(new)`` followed by ``os.umask(old)``, which changes
    the mask of the whole process for an instant; the interim value is 077, so a file another
    thread creates in that instant is private rather than too open. Read on every call (a few
    microseconds), so a process that changes its umask is followed.
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def publish_modes(path: str) -> None:
    """Give ``path`` (a file, or a folder and everything below it) the permissions an ordinary
    ``open()`` / ``mkdir()`` gets under the process umask: ``0o666 & ~umask`` for files,
    ``0o777 & ~umask`` for folders. Only the permission bits change, and only where they differ;
    symbolic links are not followed. Every publisher here calls it just before publishing."""
    mask = process_umask()
    _set_mode(path, mask)
    if os.path.isdir(path) and not os.path.islink(path):
        for folder, dirs, files in os.walk(path):
            for entry in (*dirs, *files):
                _set_mode(os.path.join(folder, entry), mask)


def _set_mode(path: str, mask: int) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    wanted = (0o777 if stat.S_ISDIR(st.st_mode) else 0o666) & ~mask
    if stat.S_IMODE(st.st_mode) & 0o777 != wanted:
        os.chmod(path, (stat.S_IMODE(st.st_mode) & ~0o777) | wanted)


def write_new_file(final_path: str, write: Callable[[str], T]) -> T:
    """Write ``final_path`` through ``write(tmp_path)``; raise FileExistsError if it exists.

    ``write`` receives a temporary path in the same folder (same file system, so publishing is a
    link, not a copy) and must create the complete file there (it may replace the empty file at
    that path). The published file gets the umask's mode (``publish_modes``). Returns what
    ``write`` returns.
    """
    return _write_then(final_path, write, _publish)


def replace_file(path: str, write: Callable[[str], T]) -> T:
    """``write_new_file`` for a program's own file that is meant to change (a pointer, a manifest):
    written under a temporary name beside ``path`` and renamed over it in one step, so a failed
    write leaves the previous version. It gets the umask's mode (``publish_modes``)."""
    return _write_then(path, write, os.replace)


def replace_text_file(path: str, text: str) -> None:
    """``replace_file`` for a small UTF-8 text file (a pointer, a manifest, a run's settings), synced
    to disk before the rename: a kill or a power cut leaves the previous version or the new one."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    replace_file(path, write)


def is_temporary(name: str) -> bool:
    """Whether a folder entry's name is one of this module's hidden temporary files or staging folders."""
    return bool(_TEMPORARY.fullmatch(name))


def remove_temporaries(folder: str) -> None:
    """Remove the temporary files and staging folders a killed writer left in ``folder`` (only
    names ``is_temporary`` recognises; a link is removed, never followed)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        if is_temporary(name):
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


def _write_then(final_path: str, write: Callable[[str], T], publish: Callable[[str, str], None]) -> T:
    """``write`` a hidden temporary file beside ``final_path`` (mode 0600 while it is written), give
    it the umask's mode, ``publish(tmp, final_path)``; the temporary file never outlives the call."""
    folder, name = os.path.split(os.path.abspath(final_path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{os.path.splitext(name)[1]}", dir=folder)
    os.close(fd)
    try:
        result = write(tmp)
        publish_modes(tmp)
        publish(tmp, final_path)
        return result
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _publish(tmp: str, final_path: str) -> None:
    try:
        os.link(tmp, final_path)  # atomic, and refuses to replace an existing file
    except FileExistsError:
        raise
    except OSError:
        # File systems without hard links (FAT, some network shares): rename instead. On Windows
        # rename refuses an existing target; elsewhere check first (a narrow race, no link support).
        if os.name != "nt" and os.path.lexists(final_path):
            raise FileExistsError(final_path) from None
        os.rename(tmp, final_path)


def write_numbered_file(
    folder: str, name_for: Callable[[int], str], counter: int, write: Callable[[str], T]
) -> tuple[str, int, T]:
    """Write the first free name among ``name_for(counter)``, ``name_for(counter + 1)``, ...

    The counter a caller computed from a folder listing can be stale when another process writes
    to the same folder; a taken name moves on to the next number instead of overwriting.
    Returns the file name, the counter used and what ``write`` returned.
    """
    [published] = write_numbered_files(folder, lambda _i, n: name_for(n), counter, 1,
                                       lambda _i, path: write(path))
    return published


def write_numbered_files(
    folder: str, name_for: Callable[[int, int], str], counter: int, count: int,
    write: Callable[[int, str], T],
) -> list[tuple[str, int, T]]:
    """Publish ``count`` new files in ``folder`` all together or none of them.

    ``write(i, tmp)`` writes item ``i`` completely to a hidden temporary file in ``folder``; only
    when every item is written are they published, in order, item ``i`` under the first free name
    among ``name_for(i, c)``, ``name_for(i, c + 1)``, ... (``c`` starting at ``counter`` and moving
    past each number used), never replacing an existing file (``write_numbered_file``). A failure
    while writing (bad input, a full disk, an interrupt) removes the temporary files and publishes
    nothing. A failure while publishing (rare: a link refused by the file system) also takes back
    the items this call already published, but only names that still are the very file this call
    wrote (same device and inode): a file someone else put there is never touched. Every file gets
    the umask's mode (``publish_modes``). Returns (file name, counter used, what ``write``
    returned) per item.
    """
    temporaries: list[str] = []
    published: list[tuple[str, tuple[int, int]]] = []
    try:
        results = []
        for i in range(count):
            name = name_for(i, counter)  # the extension stays last: some writers pick the format by it
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{os.path.splitext(name)[1]}", dir=folder)
            os.close(fd)
            temporaries.append(tmp)
            results.append(write(i, tmp))
            publish_modes(tmp)
        saved = []
        for i, tmp in enumerate(temporaries):
            st = os.stat(tmp)
            while True:
                name = name_for(i, counter)
                try:
                    _publish(tmp, os.path.join(folder, name))
                    break
                except FileExistsError:
                    counter += 1
            published.append((name, (st.st_dev, st.st_ino)))
            saved.append((name, counter, results[i]))
            counter += 1
        published.clear()
        return saved
    finally:
        for name, identity in published:  # only on failure: the list is cleared on success
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == identity:
                    os.unlink(path)
            except OSError:
                pass
        for tmp in temporaries:
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_numbered_folder(
    parent: str, name_for: Callable[[int], str], counter: int, fill: Callable[[str], T]
) -> tuple[str, int, T]:
    """Create a complete new folder ``name_for(counter)`` (or the next free number) in ``parent``.

    ``fill(staging)`` writes the folder's contents into a hidden staging folder in ``parent`` (same
    file system); the staging folder is then renamed to the first free name among
    ``name_for(counter)``, ``name_for(counter + 1)``, ... in one step, never replacing an existing
    entry, so the folder appears complete or not at all. On any failure (interrupts included) the
    staging folder is removed. The folder and everything in it get the umask's modes
    (``publish_modes``). Returns the folder name, the counter used and what ``fill`` returned.
    """
    staging = _new_staging(parent, name_for(counter))
    try:
        result = fill(staging)
        publish_modes(staging)
        while True:
            name = name_for(counter)
            try:
                rename_new(staging, os.path.join(parent, name))
                return name, counter, result
            except FileExistsError:
                counter += 1
    finally:
        if os.path.lexists(staging):
            shutil.rmtree(staging, ignore_errors=True)


def write_new_folder(path: str, fill: Callable[[str], T]) -> T:
    """Create the complete new folder ``path`` through ``fill(staging)``; FileExistsError if it exists.

    ``write_numbered_folder`` with one fixed name: ``fill`` writes into a hidden staging folder
    beside ``path`` (same file system), which is renamed to ``path`` in one step that refuses an
    existing entry, so the folder appears complete or not at all. An existing ``path`` is refused
    before ``fill`` runs (no work wasted) and again, atomically, at the rename. On any failure
    (interrupts included) the staging folder is removed. The parent folder must exist. The folder
    and everything in it get the umask's modes (``publish_modes``). Returns what ``fill`` returned.
    """
    path = os.path.abspath(path)
    if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
    parent, name = os.path.split(path)
    staging = _new_staging(parent, name)
    try:
        result = fill(staging)
        publish_folder(staging, path)
        return result
    finally:
        if os.path.lexists(staging):
            shutil.rmtree(staging, ignore_errors=True)


def publish_folder(staging: str, path: str) -> None:
    """Publish the complete folder ``staging`` as ``path`` in one rename that never replaces an
    existing entry (FileExistsError), its contents first given the umask's modes
    (``publish_modes``). For a caller that fills and cleans up its own staging folder (the batch
    runner); ``write_new_folder`` does all of it."""
    publish_modes(staging)
    rename_new(staging, path)


def _new_staging(parent: str, name: str) -> str:
    while True:
        staging = os.path.join(parent, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            os.mkdir(staging)  # mode 0o777 & ~umask
            return staging
        except FileExistsError:
            continue


_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100


def rename_new(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``, raising FileExistsError if ``dst`` exists.

    A plain POSIX rename replaces an empty directory at ``dst``; Linux's renameat2 with
    RENAME_NOREPLACE refuses atomically. Where that is missing (other systems, file systems
    without support) the existence check and the rename are two steps (a narrow race, as in
    ``_publish``); Windows' rename refuses an existing target by itself.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), dst)
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), src, None, dst)
    if os.name != "nt" and os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst)
