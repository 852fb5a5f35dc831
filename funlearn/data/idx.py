"""Reader for the IDX format of MNIST, Fashion-MNIST and KMNIST (gzipped or raw), numpy only.

Layout (big-endian): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions ``d``, then ``d`` uint32 sizes, then the
values in C order. A file starting with the gzip magic ``1f 8b`` is decompressed first, whatever
its name.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_idx"]

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file into a tensor of its shape and type (uint8 for images and labels)."""
    file = Path(path)
    raw = file.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise ValueError(
            f"{file} is not an IDX file (bad magic {raw[:4].hex()}); pass an MNIST-style *-ubyte file"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{file}: truncated IDX header ({len(raw)} bytes); fetch the file again")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[raw[2]])
    expected = header + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(
            f"{file}: header promises shape {shape} ({expected} bytes) but the file has {len(raw)} bytes; "
            "the file is truncated or corrupt, fetch it again"
        )
    values = np.frombuffer(bytearray(raw), dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(values.astype(dtype.newbyteorder("="), copy=False))
