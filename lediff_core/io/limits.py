"""Limits every image reader applies before it allocates, and the one out-of-memory message.

A hostile or damaged header can claim any size; the readers refuse claims above ``MAX_PIXELS`` and
claims the file's bytes cannot hold, and report a genuine allocation failure as memory (image size
and need) rather than as a damaged file.
"""

from __future__ import annotations

# Refuse to decode images larger than this many pixels (a hostile header can claim any size).
MAX_PIXELS = 16384 * 16384


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def out_of_memory(path: str, width: int, height: int, need: int, error: BaseException | None = None) -> MemoryError:
    """The MemoryError to raise when reading ``path`` (a ``width`` x ``height`` image needing about
    ``need`` bytes) failed to allocate: it names the file, the size, the need and the fix."""
    detail = f" ({error})" if error is not None and str(error) else ""
    return MemoryError(
        f"not enough memory to read {path!r}: its {width}x{height} image needs about "
        f"{format_bytes(need)} while loading{detail}. The file is not damaged: free memory (close "
        "other workflows or programs, unload models) or load a smaller image"
    )
