"""Read back an offline W&B run (``run-<id>.wandb``): the records W&B itself wrote.

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each chunk a
7-byte header (CRC32, length, type FULL/FIRST/MIDDLE/LAST) and its bytes; a record is a
protobuf ``wandb.proto.wandb_internal_pb2.Record``.
"""

import json
import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path):
    data = Path(path).read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # block trailer padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _key(item):
    return item.key or "/".join(item.nested_key)


def read_run(run_dir, timeout=120.0):
    """``{"config": {...}, "history": [{...}], "summary": {...}, "artifacts": [...]}``, once
    W&B's service has written the run's last (``exit``) record: it writes asynchronously, after
    ``wandb.finish`` has returned."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while not any(r.WhichOneof("record_type") == "exit" for r in _safe_records(path)):
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout} s"
        time.sleep(0.5)
    out = {"config": {}, "history": [], "summary": {}, "artifacts": [], "group": None}
    out["project"] = None
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"] = record.run.run_group or out["group"]
            out["project"] = record.run.project or out["project"]
        elif kind == "config":
            for item in record.config.update:
                out["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][_key(item)] = json.loads(item.value_json)
        elif kind == "artifact":
            art = record.artifact
            files = [entry.path for entry in art.manifest.contents]
            out["artifacts"].append({"name": art.name, "type": art.type, "files": files})
    return out


def _safe_records(path):
    try:
        return list(records(path))
    except Exception:  # a record half-written right now
        return []
