"""Permissions of published files (issue 24): the expected mode is not written anywhere: a file made with
plain open() and a folder made with plain os.mkdir() in the same folder, under the same umask, are the
reference. Umasks 022 and 027 (the ``umask`` fixture of tests/conftest.py) tell a publisher that follows
the umask from one that hard-codes either."""

from __future__ import annotations

import contextlib
import os
import stat

UMASKS = (0o022, 0o027)


@contextlib.contextmanager
def process_umask(mask: int):
    old = os.umask(mask)
    try:
        yield mask
    finally:
        os.umask(old)


def ordinary_modes(folder) -> tuple[int, int]:
    """(file mode, folder mode) that plain open() and os.mkdir() give in ``folder`` right now."""
    file = os.path.join(folder, ".reference_file")
    sub = os.path.join(folder, ".reference_folder")
    with open(file, "x"):
        pass
    os.mkdir(sub)
    try:
        return stat.S_IMODE(os.stat(file).st_mode), stat.S_IMODE(os.stat(sub).st_mode)
    finally:
        os.unlink(file)
        os.rmdir(sub)


def assert_ordinary(*paths) -> int:
    """Every file and folder at and below ``paths`` has the mode an ordinary open() / mkdir() gets
    in its folder; returns how many entries were checked."""
    entries = []
    for path in paths:
        entries.append(str(path))
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                entries += [os.path.join(folder, e) for e in (*dirs, *files)]
    references, wrong = {}, []
    for entry in entries:
        folder = os.path.dirname(entry)
        if folder not in references:
            references[folder] = ordinary_modes(folder)
        st = os.lstat(entry)
        expected = references[folder][1 if stat.S_ISDIR(st.st_mode) else 0]
        if stat.S_IMODE(st.st_mode) != expected:
            wrong.append(f"{entry}: {stat.S_IMODE(st.st_mode):04o}, expected {expected:04o}")
    assert not wrong, "\n".join(wrong)
    return len(entries)


def published(folder) -> list[str]:
    """The entries the pack created in ``folder`` (not the folder itself, which the test made)."""
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
