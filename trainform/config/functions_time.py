"""Terraform's time functions: ``timestamp``, ``plantimestamp``, ``timeadd``, ``timecmp``,
``formatdate``. Timestamps are RFC 3339 strings, as in Terraform.

``timestamp()`` is non-deterministic, so it follows Terraform's rule: unknown at plan time
(shown "(known after apply)"), decided when the engine evaluates again at apply time.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from trainform.config.functions import _fn, _quote, _want_str
from trainform.config.values import UNKNOWN, FunctionContext, FunctionError

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def _parse(text: Any, what: str = "timestamp") -> datetime:
    string = _want_str(text, what)
    match = _RFC3339.match(string)
    if match is None:
        raise FunctionError(
            f'{what} {_quote(string)} is not an RFC 3339 timestamp such as "2024-01-02T15:04:05Z"'
        )
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match[7] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    zone = match[8]
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = -1 if zone[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise FunctionError(f"{what} {_quote(string)}: {exc}") from None


def _rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339 layout: whole seconds, "Z" for UTC, else the offset."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    offset = moment.utcoffset()
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _now() -> str:
    return _rfc3339(datetime.now(timezone.utc).replace(microsecond=0))


@_fn(
    "timestamp",
    "timestamp(): The current time (UTC, RFC 3339); unknown at plan time, decided at apply.",
)
def _timestamp(ctx: FunctionContext) -> Any:
    return _now() if ctx.apply_time else UNKNOWN


@_fn("plantimestamp", "plantimestamp(): The time of the current evaluation (UTC, RFC 3339).")
def _plantimestamp(ctx: FunctionContext) -> str:
    return _now()


_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _duration(text: Any) -> timedelta:
    """A Go duration ("1h30m", "-10m", "1.5h") as a timedelta."""
    string = _want_str(text, "duration")
    body = string.lstrip("+-")
    sign = -1 if string.startswith("-") else 1
    if body == "0":
        return timedelta(0)
    seconds = 0.0
    pos = 0
    while pos < len(body):
        match = _DURATION.match(body, pos)
        if match is None or match[1] in ("", "."):
            raise FunctionError(f'invalid duration {_quote(string)}: use units such as "1h30m"')
        seconds += float(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if not body:
        raise FunctionError(f"invalid duration {_quote(string)}")
    return timedelta(seconds=sign * seconds)


@_fn(
    "timeadd",
    'timeadd(timestamp, duration): timestamp plus a duration such as "1h30m" or "-10m".',
)
def _timeadd(ctx: FunctionContext, timestamp: Any, duration: Any) -> str:
    try:
        return _rfc3339(_parse(timestamp) + _duration(duration))
    except OverflowError:
        raise FunctionError("the result is out of the range of dates") from None


@_fn(
    "timecmp",
    "timecmp(a, b): -1, 0 or 1 as timestamp a is before, at or after timestamp b.",
)
def _timecmp(ctx: FunctionContext, a: Any, b: Any) -> int:
    first, second = _parse(a, "timestamp a"), _parse(b, "timestamp b")
    return (first > second) - (first < second)


_FORMAT_TOKEN = re.compile(
    r"'(?:[^']|'')*'?|YYYY|YY|MMMM|MMM|MM|M|DD|D|EEEE|EEE|hh|h|HH|H|AA|aa|mm|m|ss|s|"
    r"ZZZZZ|ZZZZ|ZZZ|Z|[A-Za-z]+|[^A-Za-z']+"
)
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _offset(moment: datetime, colon: bool) -> str:
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset else 0
    sign = "-" if minutes < 0 else "+"
    sep = ":" if colon else ""
    return f"{sign}{abs(minutes) // 60:02d}{sep}{abs(minutes) % 60:02d}"


def _date_token(token: str, t: datetime) -> str:
    hour12 = t.hour % 12 or 12
    table = {
        "YYYY": lambda: f"{t.year:04d}",
        "YY": lambda: f"{t.year % 100:02d}",
        "MMMM": lambda: _MONTHS[t.month - 1],
        "MMM": lambda: _MONTHS[t.month - 1][:3],
        "MM": lambda: f"{t.month:02d}",
        "M": lambda: str(t.month),
        "DD": lambda: f"{t.day:02d}",
        "D": lambda: str(t.day),
        "EEEE": lambda: _DAYS[t.weekday()],
        "EEE": lambda: _DAYS[t.weekday()][:3],
        "hh": lambda: f"{t.hour:02d}",
        "h": lambda: str(t.hour),
        "HH": lambda: f"{hour12:02d}",
        "H": lambda: str(hour12),
        "AA": lambda: "PM" if t.hour >= 12 else "AM",
        "aa": lambda: "pm" if t.hour >= 12 else "am",
        "mm": lambda: f"{t.minute:02d}",
        "m": lambda: str(t.minute),
        "ss": lambda: f"{t.second:02d}",
        "s": lambda: str(t.second),
        "ZZZZZ": lambda: _offset(t, True),
        "ZZZZ": lambda: _offset(t, False),
        "ZZZ": lambda: "UTC" if not t.utcoffset() else _offset(t, False),
        "Z": lambda: "Z" if not t.utcoffset() else _offset(t, True),
    }
    render = table.get(token)
    if render is None:
        raise FunctionError(f"invalid date format verb {_quote(token)}")
    return render()


@_fn(
    "formatdate",
    "formatdate(spec, timestamp): The timestamp written in a format such as "
    '"DD MMM YYYY hh:mm ZZZ" (Terraform\'s verbs; literal text in single quotes).',
)
def _formatdate(ctx: FunctionContext, spec: Any, timestamp: Any) -> str:
    pattern = _want_str(spec, "format")
    moment = _parse(timestamp)
    out: list[str] = []
    for match in _FORMAT_TOKEN.finditer(pattern):
        token = match[0]
        if token.startswith("'"):
            if len(token) < 2 or not token.endswith("'") or token == "'":
                raise FunctionError("unterminated literal '")
            out.append(token[1:-1].replace("''", "'") if token != "''" else "'")
        elif token[0].isalpha():
            out.append(_date_token(token, moment))
        else:
            out.append(token)
    return "".join(out)
