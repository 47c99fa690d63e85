"""``open_meter(spec)``: one entry point from a spec string to a running driver.

Spec: ``<protocol>:<port>[?key=value&...]``, the port being anything pyserial's
``serial_for_url`` opens (``/dev/ttyUSB0``, ``socket://host:port``, ``loop://``, a pty path)::

    wattsup:/dev/ttyUSB0            Watts Up? PRO/.net          (115200 baud)
    wt310:/dev/ttyUSB0              Yokogawa WT310 family, SCPI (9600 baud)
    wt310:socket://10.0.0.5:10001   the same through a serial-to-Ethernet bridge
    scpi:/dev/ttyACM0               a SCPI DC supply            (9600 baud)
    um:/dev/rfcomm0                 RDTech UM24C/UM25C/UM34C, model detected (9600 baud)
    um25c:/dev/rfcomm0              the same, insisting on that model
    csv:/dev/ttyACM0                INA219/INA226 board with firmware/ina_csv (115200 baud)
    sim:  sim:wattsup  sim:wt310 …  an emulator started in this process (sim: alone = csv)

Options: ``baud``, ``interval`` (seconds between samples: the logging interval or the poll
period), ``timeout`` (per read, seconds), ``integrate=1`` (wt310: also run the meter's own
integrator), ``batch`` (csv: seconds between reads of a fast stream, default 0.05 below
10 ms intervals), ``sim=1`` (the port is a simulated meter: energy is modelled, not measured).
For ``sim:`` also ``power`` (constant watts) and ``volts``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from .base import Meter, MeterError, PortOptions, open_port
from .inacsv import InaCsv
from .scpi import ScpiSupply
from .um import UMMeter
from .wattsup import WattsUp
from .wt310 import WT310

DRIVERS: dict[str, type[Meter]] = {
    "wattsup": WattsUp, "wt310": WT310, "scpi": ScpiSupply, "um": UMMeter,
    "um24c": UMMeter, "um25c": UMMeter, "um34c": UMMeter, "csv": InaCsv,
}
OPTIONS = {"baud", "interval", "timeout", "integrate", "sim", "power", "volts", "reply_timeout", "batch"}


@dataclass
class MeterSpec:
    protocol: str
    port: str
    options: dict = field(default_factory=dict)

    def __str__(self) -> str:
        opts = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.protocol}:{self.port}" + (f"?{opts}" if opts else "")


def parse_spec(spec: str) -> MeterSpec:
    protocol, sep, rest = spec.partition(":")
    protocol = protocol.strip().lower()
    if not sep or (protocol not in DRIVERS and protocol != "sim"):
        raise MeterError(f"meter spec {spec!r}: expected <protocol>:<port>[?options] with protocol one of "
                         f"{sorted(DRIVERS) + ['sim']}, e.g. wattsup:/dev/ttyUSB0 or sim:")
    port, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - OPTIONS
    if unknown:
        raise MeterError(f"meter spec {spec!r}: unknown option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
    if protocol != "sim" and not port:
        raise MeterError(f"meter spec {spec!r}: no port; e.g. {protocol}:/dev/ttyUSB0")
    return MeterSpec(protocol, port, options)


def _num(opts: dict, key: str, default: float, spec: str, zero_ok: bool = False) -> float:
    try:
        x = float(opts.get(key, default))
    except ValueError:
        raise MeterError(f"meter spec {spec!r}: option {key}={opts[key]!r} is not a number") from None
    if x < 0 or (x == 0 and not zero_ok):
        raise MeterError(f"meter spec {spec!r}: option {key} must be {'>= 0' if zero_ok else 'positive'}")
    return x


def open_meter(spec: str) -> Meter:
    """Open the meter a spec names; raises MeterError with what to check when it cannot."""
    s = parse_spec(spec)
    if s.protocol == "sim":
        return _open_sim(s, spec)
    from .emulate import SIMULATED_PORTS      # no import cost for real meters beyond this module
    cls = DRIVERS[s.protocol]
    o = s.options
    baud = int(_num(o, "baud", cls.default_baud, spec))
    interval = _num(o, "interval", 1.0, spec)
    timeout = _num(o, "timeout", min(0.2, interval), spec)
    simulated = o.get("sim", "0") not in ("0", "", "false") or s.port in SIMULATED_PORTS
    kwargs: dict = {"interval_s": interval, "simulated": simulated}
    if cls is not InaCsv:
        kwargs["baud"] = baud
    if cls is WT310:
        kwargs["integrate"] = o.get("integrate", "0") not in ("0", "", "false")
    if cls is UMMeter and s.protocol != "um":
        kwargs["expect_model"] = s.protocol
    if "batch" in o:
        if cls is not InaCsv:
            raise MeterError(f"meter spec {spec!r}: batch= applies to the csv protocol only")
        kwargs["batch_s"] = _num(o, "batch", 0.02, spec, zero_ok=True)
    if "reply_timeout" in o and cls is not InaCsv:
        kwargs["reply_timeout_s"] = _num(o, "reply_timeout", 2.0, spec)
    try:
        port = open_port(s.port, PortOptions(baud=baud, timeout=timeout))
    except (OSError, ValueError) as e:
        raise MeterError(f"cannot open {s.port!r} for the {s.protocol} meter: {e}. Check the device "
                         f"name (ls /dev/ttyUSB* /dev/ttyACM* /dev/rfcomm*) and that you may open it "
                         f"(the dialout group)") from None
    try:
        meter = cls(port, **kwargs)
    except BaseException:
        port.close()
        raise
    meter.spec = spec
    return meter


def _open_sim(s: MeterSpec, spec: str) -> Meter:
    from .emulate import DEFAULT_IDLE_W, PROTOCOLS, start_emulator
    proto = s.port or "csv"
    if proto not in PROTOCOLS:
        raise MeterError(f"meter spec {spec!r}: no emulator for {proto!r}; use sim: or sim:<one of "
                         f"{sorted(PROTOCOLS)}>")
    o = s.options
    watts = _num(o, "power", DEFAULT_IDLE_W, spec)
    em = start_emulator(proto, lambda t: watts, interval_s=_num(o, "interval", 0.1, spec),
                        volts=_num(o, "volts", 5.0, spec))
    try:
        meter = open_meter(em.spec)
    except BaseException:
        em.stop()
        raise
    meter.emulator = em      # stopped by close_meter(); a reconnect reopens meter.spec
    return meter


def close_meter(meter: Meter) -> None:
    """Close the port and stop the in-process emulator that `sim:` started, if any."""
    meter.close()
    em = getattr(meter, "emulator", None)
    if em is not None:
        em.stop()
