"""RDTech UM24C / UM25C / UM34C USB testers (Bluetooth SPP, e.g. /dev/rfcomm0, or a 9600-baud UART).

The host sends one byte, 0xF0, and the tester answers a 130-byte big-endian frame. Layout from
rdserialtool (rfinnie/rdserialtool, rdserial/um/__init__.py: field offsets, sizes and scales)
and libsigrok (src/hardware/rdtech-um/protocol.h: the model ids in bytes 0-1, UM24C 0x0963,
UM25C 0x09C9, UM34C 0x0D4C; the frame ends in 0xFFF1). The UM25C reports one more decimal:
voltage in mV and current in 0.1 mA, where the UM24C and UM34C report 10 mV and 1 mA.
"""
from __future__ import annotations

import struct
import time

from .base import BadRecord, BaudWatch, Meter, MeterError, NoData, Sample

FRAME_LEN = 130
REQUEST = b"\xf0"
TRAILER = 0xFFF1
BAUD = 9600
MODELS = {0x0963: "UM24C", 0x09C9: "UM25C", 0x0D4C: "UM34C"}
MODEL_IDS = {v: k for k, v in MODELS.items()}

# (name, offset, size in bytes, scale to SI; a dict where the scale depends on the model).
# One table: the parser reads it, the emulator packs with it.
LAYOUT: tuple[tuple[str, int, int, object], ...] = (
    ("model", 0, 2, 1),
    ("volts", 2, 2, {"UM25C": 0.001, "UM24C": 0.01, "UM34C": 0.01}),
    ("amps", 4, 2, {"UM25C": 0.0001, "UM24C": 0.001, "UM34C": 0.001}),
    ("watts", 6, 4, 0.001),
    ("temp_c", 10, 2, 1),
    ("temp_f", 12, 2, 1),
    ("group", 14, 2, 1),
    # 16..95: ten data groups of (mAh u32, mWh u32), not used here
    ("data_plus_v", 96, 2, 0.01),
    ("data_minus_v", 98, 2, 0.01),
    ("charge_mode", 100, 2, 1),
    ("record_ah", 102, 4, 0.001),
    ("record_wh", 106, 4, 0.001),
    ("record_threshold_a", 110, 2, 0.01),
    ("record_s", 112, 4, 1),
    ("recording", 116, 2, 1),
    ("screen_timeout_min", 118, 2, 1),
    ("brightness", 120, 2, 1),
    ("ohms", 122, 4, 0.1),
    ("screen", 126, 2, 1),
    ("trailer", 128, 2, 1),
)
_FMT = {1: ">B", 2: ">H", 4: ">I"}


def _scale(scale, model: str) -> float:
    return scale[model] if isinstance(scale, dict) else scale


def unpack_frame(frame: bytes) -> dict:
    if len(frame) != FRAME_LEN:
        raise BadRecord(frame, f"UM frame of {len(frame)} bytes, expected {FRAME_LEN}")
    model_id, trailer = struct.unpack_from(">H", frame, 0)[0], struct.unpack_from(">H", frame, 128)[0]
    if model_id not in MODELS:
        raise BadRecord(frame, f"unknown UM model id 0x{model_id:04X}")
    if trailer != TRAILER:
        raise BadRecord(frame, f"UM frame trailer 0x{trailer:04X}, expected 0x{TRAILER:04X}")
    model = MODELS[model_id]
    out: dict = {"model_name": model}
    for name, off, size, scale in LAYOUT:
        raw = struct.unpack_from(_FMT[size], frame, off)[0]
        out[name] = raw * _scale(scale, model) if name not in ("model", "trailer") else raw
    return out


def pack_frame(model: str, **values: float) -> bytes:
    """Build a frame (the emulator's): values by LAYOUT name in SI units; the rest are zero."""
    frame = bytearray(FRAME_LEN)
    values = {"model": MODEL_IDS[model], "trailer": TRAILER, **values}
    for name, off, size, scale in LAYOUT:
        if name in values:
            k = 1 if name in ("model", "trailer") else _scale(scale, model)
            struct.pack_into(_FMT[size], frame, off, max(0, min(round(values[name] / k), 256 ** size - 1)))
    return bytes(frame)


class UMMeter(Meter):
    protocol = "um"
    default_baud = BAUD

    def __init__(self, port, *, interval_s: float = 1.0, simulated: bool = False, baud: int = BAUD,
                 expect_model: str | None = None, reply_timeout_s: float = 2.0):
        super().__init__(port, interval_s=interval_s, simulated=simulated)
        self.reply_timeout_s = reply_timeout_s
        self.baud_watch = BaudWatch(baud, "RDTech UM", window=2 * FRAME_LEN, binary=True)
        try:
            first = self._poll()
        except NoData:
            raise MeterError(f"no answer to 0xF0 from the UM tester within {reply_timeout_s:g} s: "
                             f"is it on, paired (rfcomm bound) and on this port?") from None
        except BadRecord as e:
            raise MeterError(f"the first frame from the UM tester is unreadable ({e.why}): check the "
                             f"baud rate (expected {baud}) and that this is a UM24C/UM25C/UM34C") from None
        self.model = self.info["model"] = first["model_name"]
        if expect_model and expect_model.upper() != self.model:
            raise MeterError(f"asked for a {expect_model.upper()} but the tester says it is a {self.model}: "
                             f"name the right model, or use the um: prefix, which detects it")

    def _poll(self) -> dict:
        if self.port.in_waiting:
            # A frame that came after its poll timed out: drop it, or every answer would lag by one.
            self.port.reset_input_buffer()
        self.port.write(REQUEST)
        deadline = time.monotonic() + self.reply_timeout_s
        buf = bytearray()
        while len(buf) < FRAME_LEN:
            if time.monotonic() >= deadline or self.cancelled.is_set():
                if buf:
                    self.baud_watch.feed(bytes(buf))
                    raise BadRecord(bytes(buf), f"truncated UM frame ({len(buf)} of {FRAME_LEN} bytes)")
                raise NoData()
            chunk = self.port.read(FRAME_LEN - len(buf))
            buf += chunk
        self._t = time.monotonic()
        self._raw = bytes(buf)
        try:
            d = unpack_frame(bytes(buf))
        except BadRecord:
            self.baud_watch.feed(bytes(buf))
            self._resync()
            raise
        self.baud_watch.good()
        return d

    def _resync(self) -> None:
        # A frame out of step: drop whatever is in flight so the next request starts clean.
        try:
            time.sleep(0.01)
            self.port.reset_input_buffer()
        except (OSError, AttributeError):
            pass

    def read(self) -> Sample:
        self.wait_slot()
        d = self._poll()
        return Sample(self._t, d["watts"], d["volts"], d["amps"], self._raw.hex().encode())
