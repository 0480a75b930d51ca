"""TensorBoard's event-file format, written fast: serialized Event messages (scalars, hparams plugin
data) and their TFRecord framing (length, masked CRC32C, record, masked CRC32C). Used by
runner.results.tensorboard, which decides what goes into which run.

Measured on 2 CPU cores: building and serializing one protobuf Event per point took 3.5 us; here each
tag's message is serialized once by protobuf and every point is spliced into it (0.7 us, the same
bytes). tensorboard's own CRC32C is pure Python (about 10 us a record); here numpy sums the records
of one length together, one array operation per byte position.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import UserError

__all__ = ["DISCRETE_MOST", "Events", "Framer", "float32", "load", "masked_crc32c"]

INSTALL = "pip install 'runner[tensorboard]'"
DISCRETE_MOST = 64  # an hparam with at most this many values lists them as its domain (the tab's checkboxes)
_SENTINEL = float(np.finfo(np.float32).max)  # its bytes (ff ff 7f 7f): 0xff never occurs in a UTF-8 tag


def load() -> SimpleNamespace:
    """tensorboard's protobuf modules; a UserError naming the extra to install when they do not import."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
        from tensorboard.plugins.hparams import metadata as hparams_metadata
    except ImportError as exc:
        raise UserError(f"exporting to TensorBoard needs the tensorboard package, which does not import here "
                        f"({exc}): {INSTALL}") from None
    return SimpleNamespace(event_pb2=event_pb2, summary_pb2=summary_pb2, api_pb2=api_pb2,
                           plugin_data_pb2=plugin_data_pb2, hparams_metadata=hparams_metadata)


class Events:
    """Serialized Event messages, all stamped with one wall time. `tb`: the modules load() gives."""

    def __init__(self, tb: SimpleNamespace, wall_time: float) -> None:
        self.tb, self.wall_time = tb, wall_time
        self._wall = b"\x09" + struct.pack("<d", wall_time)  # Event field 1, wall_time (double)
        self._templates: dict[str, tuple[bytes, bytes]] = {}
        self._steps: dict[int, bytes] = {0: b""}  # protobuf leaves out a 0
        self.version = self.event(file_version="brain.Event:2")  # every event file starts with it

    def scalars(self, tag: str, steps: Sequence[int], values: bytes) -> list[bytes]:
        """One event a point (simple_value, as TensorBoard's own scalars): `values` holds each point's
        float32, little-endian (float32())."""
        head, tail = self._template(tag)
        wall, known = self._wall, self._steps
        out = []
        for k, step in enumerate(steps):
            encoded = known.get(step)
            if encoded is None:
                encoded = known[step] = b"\x10" + varint(step)  # Event field 2, step (int64)
            out.append(b"".join((wall, encoded, head, values[4 * k:4 * k + 4], tail)))
        return out

    def _template(self, tag: str) -> tuple[bytes, bytes]:
        """The bytes of a scalar's Summary (Event field 5) before and after its 4-byte value."""
        if tag not in self._templates:
            value = self.tb.summary_pb2.Summary.Value(tag=tag, simple_value=_SENTINEL)
            summary = self.tb.summary_pb2.Summary(value=[value]).SerializeToString()
            head, found, tail = summary.partition(float32([_SENTINEL]))
            assert found and float32([_SENTINEL]) not in tail, "the value's place in the message must be unique"
            self._templates[tag] = (b"\x2a" + varint(len(summary)) + head, tail)
        return self._templates[tag]

    def event(self, step: int = 0, **fields: Any) -> bytes:
        return self.tb.event_pb2.Event(wall_time=self.wall_time, step=step, **fields).SerializeToString()

    def _hparams(self, tag: str, **data: Any) -> bytes:
        """An event holding hparams plugin data (experiment, session start or end) in its metadata."""
        tb = self.tb
        plugin = tb.plugin_data_pb2.HParamsPluginData(**data)
        value = tb.summary_pb2.Summary.Value(tag=tag, metadata=tb.hparams_metadata.create_summary_metadata(plugin),
                                             tensor=tb.hparams_metadata.NULL_TENSOR)
        return self.event(summary=tb.summary_pb2.Summary(value=[value]))

    def session_start(self, group: str, values: dict[str, bool | float | str]) -> bytes:
        """A run's hparams (a session of its own group, so that the table has one row per run)."""
        info = self.tb.plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=self.wall_time)
        for key, v in values.items():
            field = "bool_value" if isinstance(v, bool) else "string_value" if isinstance(v, str) else "number_value"
            setattr(info.hparams[key], field, v)
        return self._hparams(self.tb.hparams_metadata.SESSION_START_INFO_TAG, session_start_info=info)

    def session_end(self, success: bool) -> bytes:
        api = self.tb.api_pb2
        info = self.tb.plugin_data_pb2.SessionEndInfo(status=api.STATUS_SUCCESS if success else api.STATUS_FAILURE,
                                                      end_time_secs=self.wall_time)
        return self._hparams(self.tb.hparams_metadata.SESSION_END_INFO_TAG, session_end_info=info)

    def experiment(self, hparams: Sequence[tuple[str, str, list]], metrics: Sequence[tuple[str, str]]) -> bytes:
        """The summary the HParams tab starts from. hparams: (name, kind: bool, number or string, the
        sorted distinct values); metrics: (scalar tag, name shown)."""
        api = self.tb.api_pb2
        kinds = {"bool": api.DATA_TYPE_BOOL, "number": api.DATA_TYPE_FLOAT64, "string": api.DATA_TYPE_STRING}
        infos = []
        for name, kind, values in hparams:
            info = api.HParamInfo(name=name, type=kinds[kind])
            if len(values) <= DISCRETE_MOST:
                info.domain_discrete.extend(values)
            elif kind == "number":
                info.domain_interval.min_value, info.domain_interval.max_value = values[0], values[-1]
            infos.append(info)
        shown = [api.MetricInfo(name=api.MetricName(tag=tag), display_name=name) for tag, name in metrics]
        return self._hparams(self.tb.hparams_metadata.EXPERIMENT_TAG, experiment=api.Experiment(
            hparam_infos=infos, metric_infos=shown, time_created_secs=self.wall_time))


def float32(values: Sequence[float] | np.ndarray) -> bytes:
    """Values as float32, little-endian, 4 bytes each: what TensorBoard's scalars hold (a value beyond
    float32's range becomes +-inf)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype("<f4").tobytes()


def varint(n: int) -> bytes:
    """Protobuf's varint of an int64 (a negative one as its 64-bit two's complement, as protobuf does)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# --- the TFRecord framing --------------------------------------------------------------------------
def _crc_table() -> np.ndarray:
    """CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of each byte value."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _crc_table()


def masked_crc32c(records: Sequence[bytes]) -> np.ndarray:
    """TFRecord's masked CRC32C of each record. Records of one length are summed together, a numpy
    column per byte position: one array operation per position instead of one Python step per byte."""
    lengths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    crcs = np.empty(len(records), dtype=np.uint32)
    order = np.argsort(lengths, kind="stable")
    for group in np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1):
        if not len(group):
            continue
        rows = np.frombuffer(b"".join([records[i] for i in group]), dtype=np.uint8)
        crc = np.full(len(group), 0xFFFFFFFF, dtype=np.uint32)
        for column in np.ascontiguousarray(rows.reshape(len(group), -1).T) if len(rows) else ():
            crc = _CRC_TABLE[(crc ^ column) & 0xFF] ^ (crc >> 8)
        crcs[group] = crc ^ np.uint32(0xFFFFFFFF)
    return ((crcs >> 15) | (crcs << 17)) + np.uint32(0xA282EAD8)


class Framer:
    """TFRecord framing: length (uint64), its masked CRC32C, the record, the record's masked CRC32C."""

    def __init__(self) -> None:
        self._headers: dict[int, bytes] = {}  # by record length

    def frame(self, records: Sequence[bytes]) -> list[bytes]:
        """Each record framed; all are checksummed at once (the more, the faster a record)."""
        new = sorted({len(r) for r in records} - self._headers.keys())
        lengths = [struct.pack("<Q", n) for n in new]
        self._headers.update({n: head + crc for n, head, crc in zip(new, lengths, _sums(lengths))})
        headers = self._headers
        return [b"".join((headers[len(r)], r, crc)) for r, crc in zip(records, _sums(records))]


def _sums(records: Sequence[bytes]) -> list[bytes]:
    """Each record's masked CRC32C, as the 4 little-endian bytes TFRecord writes."""
    data = masked_crc32c(records).astype("<u4").tobytes()
    return [data[i:i + 4] for i in range(0, len(data), 4)]
