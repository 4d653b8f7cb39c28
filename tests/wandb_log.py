"""Read an offline wandb run's transaction log (``run-<id>.wandb``) back into its records.

wandb 0.31 writes an offline run's summary and run labels only into this log (no
``wandb-summary.json``) and ships no reader for it. The log is a LevelDB-style file: a 7-byte
header (``:W&B``, magic, version), then 32 KiB blocks of chunks, each a 7-byte header (CRC32,
length, type) and a piece of a serialized ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = b":W&B\xe1\xbe\x00"
BLOCK = 32 * 1024
CHUNK = struct.Struct("<IHB")  # checksum, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[pb.Record]:
    """Every record of the log, in order."""
    data = path.read_bytes()
    assert data[: len(FILE_HEADER)] == FILE_HEADER, f"{path} is not a wandb transaction log"
    records, pieces, pos = [], b"", len(FILE_HEADER)
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = CHUNK.unpack_from(data, pos)
        assert kind in (FULL, FIRST, MIDDLE, LAST), f"chunk type {kind} at byte {pos} of {path}"
        pieces += data[pos + CHUNK.size : pos + CHUNK.size + length]
        pos += CHUNK.size + length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records


def of_type(records: list[pb.Record], name: str) -> list[Any]:
    """The payloads of the records of one type (``run``, ``summary``, ``exit``, ...)."""
    return [getattr(r, name) for r in records if r.WhichOneof("record_type") == name]


def final_summary(records: list[pb.Record]) -> dict[str, Any]:
    """The run's summary after every summary update, nested keys as nested dicts."""
    summary: dict[str, Any] = {}
    for record in of_type(records, "summary"):
        for item in record.update:
            *parents, leaf = list(item.nested_key) or [item.key]
            target = summary
            for key in parents:
                target = target.setdefault(key, {})
            target[leaf] = json.loads(item.value_json)
    return summary
