"""The Dockerfile instructions that only change the image config, by Docker's rules:
HEALTHCHECK (options as Go durations, stored in nanoseconds; ``NONE``), VOLUME,
STOPSIGNAL, EXPOSE (ranges and protocols) and SHELL. Pure: each function takes the
instruction's text and returns the config value, or raises ValueError with a message
that starts with the instruction's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from pipeline.spec.dockerwords import expand, json_array, split_flags, split_words

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
HEALTH_DURATIONS = {
    "interval": "Interval",
    "timeout": "Timeout",
    "start-period": "StartPeriod",
    "start-interval": "StartInterval",
}
_SIGNALS = frozenset(
    [
        "HUP",
        "INT",
        "QUIT",
        "ILL",
        "TRAP",
        "ABRT",
        "BUS",
        "FPE",
        "KILL",
        "USR1",
        "SEGV",
        "USR2",
        "PIPE",
        "ALRM",
        "TERM",
        "STKFLT",
        "CHLD",
        "CONT",
        "STOP",
        "TSTP",
        "TTIN",
        "TTOU",
        "URG",
        "XCPU",
        "XFSZ",
        "VTALRM",
        "PROF",
        "WINCH",
        "IO",
        "PWR",
        "SYS",
    ]
)


def go_duration(text: str) -> int:
    """Nanoseconds of a Go duration such as ``1m30s``, ``500ms``, ``2h`` or ``0``."""
    if text == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ValueError(f'"{text}" is not a duration (like 30s, 1m30s, 500ms)')
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("an empty duration")
    return int(total)


def healthcheck(text: str) -> str:
    """HEALTHCHECK's config value, as canonical JSON: ``{"Test": ["NONE"]}`` for
    ``NONE``; else ``CMD-SHELL`` (shell form, run by the container's shell) or ``CMD``
    (exec form) with the options given (durations in ns; zero or absent = default)."""
    flags, rest = split_flags(text)
    words = rest.split(None, 1)
    if not words:
        raise ValueError("HEALTHCHECK needs CMD or NONE")
    kind = words[0].upper()
    if kind == "NONE":
        if flags:
            raise ValueError("HEALTHCHECK NONE takes no options")
        if len(words) > 1:
            raise ValueError("HEALTHCHECK NONE takes no arguments")
        return _canonical({"Test": ["NONE"]})
    if kind != "CMD":
        raise ValueError(f'HEALTHCHECK: unknown type "{words[0]}" (expected CMD or NONE)')
    value: dict[str, object] = {}
    seen: set[str] = set()
    for name, raw in flags:
        if name in seen:
            raise ValueError(f'HEALTHCHECK: flag "--{name}" given twice')
        seen.add(name)
        if raw is None or raw == "":
            raise ValueError(f'HEALTHCHECK: flag "--{name}" needs a value')
        if name in HEALTH_DURATIONS:
            try:
                ns = go_duration(raw)
            except ValueError as exc:
                raise ValueError(f"HEALTHCHECK --{name}: {exc}") from None
            if 0 < ns < 1_000_000:
                raise ValueError(f"HEALTHCHECK --{name} cannot be less than 1ms")
            if ns:
                value[HEALTH_DURATIONS[name]] = ns
        elif name == "retries":
            if not re.fullmatch(r"-?\d+", raw):
                raise ValueError(f'HEALTHCHECK --retries="{raw}": not a number')
            if int(raw) < 0:
                raise ValueError("HEALTHCHECK --retries cannot be negative")
            if int(raw):
                value["Retries"] = int(raw)
        else:
            raise ValueError(f'unknown flag "--{name}" for HEALTHCHECK')
    command = words[1] if len(words) > 1 else ""
    argv = json_array(command)
    if argv is not None:
        test = ["CMD", *argv]
    elif command.strip():
        test = ["CMD-SHELL", command.strip()]
    else:
        raise ValueError("HEALTHCHECK CMD needs a command")
    value["Test"] = test
    return _canonical(value)


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def volumes(text: str, env: Mapping[str, str], escape: str) -> tuple[str, ...]:
    """VOLUME's paths: a JSON array, or words (each variable-expanded)."""
    paths = json_array(text)
    if paths is None:
        paths = tuple(expand(w, env, escape) for w in split_words(text, escape))
    if not paths:
        raise ValueError("VOLUME needs at least one path")
    for p in paths:
        if not p.strip():
            raise ValueError("VOLUME: a path cannot be an empty string")
    return tuple(paths)


def stop_signal(text: str, env: Mapping[str, str], escape: str) -> str:
    """STOPSIGNAL's value (expanded), checked to name a signal as Docker does."""
    words = split_words(text, escape)
    if len(words) != 1:
        raise ValueError("STOPSIGNAL needs exactly one signal")
    value = expand(words[0], env, escape)
    name = value.upper().removeprefix("SIG")
    number = value.isdigit() and 0 < int(value) < 65
    realtime = re.fullmatch(r"RTMIN(\+\d+)?|RTMAX(-\d+)?", name)
    if not (number or name in _SIGNALS or realtime):
        raise ValueError(f'STOPSIGNAL: invalid signal "{value}"')
    return value


def exposed_ports(word: str) -> tuple[str, ...]:
    """``8080`` -> ``("8080/tcp",)``; ``7000-7001/udp`` -> one entry per port."""
    text = word.strip().lower()
    number, _, proto = text.partition("/")
    proto = proto or "tcp"
    low, dash, high = number.partition("-")
    if proto not in ("tcp", "udp", "sctp") or not low.isdigit() or (dash and not high.isdigit()):
        raise ValueError(f'EXPOSE: "{word}" is not a port')
    first, last = int(low), int(high) if dash else int(low)
    if not 0 < first <= last < 65536:
        raise ValueError(f'EXPOSE: "{word}" is not a port')
    return tuple(f"{p}/{proto}" for p in range(first, last + 1))


def shell(text: str) -> tuple[str, ...]:
    """SHELL's argv: only the JSON form is allowed."""
    argv = json_array(text)
    if not argv:
        raise ValueError('SHELL requires the arguments to be in JSON form, like ["/bin/sh", "-c"]')
    return argv
