"""JSON request bodies whose numeric arrays go straight into numpy, never into Python lists.

Why: ``json.loads`` turns every number into a Python float inside a list (about 32 bytes
per number, plus the decoded text); a 63 MB TF Serving REST body took the gateway from 0.9 to
1.76 GB, and ``serving.max_concurrent_rpcs`` of them at once exceeded the machine. Here:

1. :func:`split` walks the body once, and cuts out every *numeric array* (a ``[...]`` holding
   only numbers, brackets, commas and whitespace: what a tensor is in JSON) as a
   :class:`Span` of the body; what is left (keys, ``signature_name``, objects and lists
   around the tensors: the *skeleton*) is at most ``MAX_SKELETON`` bytes and parsed by
   ``json.loads`` with placeholders where the spans were;
2. :func:`decode` parses a span in chunks with numpy (numbers -> the target dtype, the
   brackets checked against the rectangular shape they must describe), so a body costs about
   its own size again (the array, the bracket skeleton), not fourteen times.

A span's numbers are parsed with the C library's ``strtod`` and cast, as
``np.asarray(json.loads(...), dtype)`` did: the same values to the last bit.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SKELETON = 1 << 20  # JSON outside the tensors (names, signature): far below this in any real body
CHUNK = 1 << 20  # bytes of a span parsed at once
SCAN_CHUNK = 1 << 18  # bytes scanned for brackets at once (its temporaries are ~15x this)
OPEN, CLOSE, COMMA = ord("["), ord("]"), ord(",")
SPECIAL = re.compile(rb'["\[]')  # what the walk stops at: a string or an array
NOT_NUMERIC = re.compile(rb'[{}"]')  # what no numeric array holds
NUMBER_TEXT = b"0123456789.eE+-NaInfity \t\r\n"  # number characters (NaN, Infinity too) and whitespace
BRACKETS_AS_SPACES = bytes.maketrans(b"[]", b"  ")
SKELETON_CHARS = b"[],"


class JsonTensorError(ValueError):
    """The body is not JSON of the kind a predict body is; the message says where."""


@dataclass(frozen=True)
class Span:
    """A numeric array of the body: ``body[start:end]`` is ``[ ... ]``."""

    start: int
    end: int


def _string_end(body: bytes, quote: int) -> int:
    """The index after the string opening at ``quote`` (escaped quotes skipped)."""
    k = quote + 1
    while True:
        k = body.find(b'"', k)
        if k < 0:
            raise JsonTensorError(f"unterminated string at byte {quote}")
        backslashes = 0
        while body[k - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return k + 1
        k += 1


def _matching(raw: np.ndarray, start: int, limit: int) -> int:
    """The index after the ``]`` closing the ``[`` at ``start`` if it comes before ``limit``
    (-1 otherwise: the array holds an object or a string); scanned in chunks."""
    depth = 0
    for i in range(start, limit, SCAN_CHUNK):
        c = raw[i:min(i + SCAN_CHUNK, limit)]
        run = np.cumsum((c == OPEN).astype(np.int16) - (c == CLOSE), dtype=np.int32) + depth
        closed = np.flatnonzero(run == 0)
        if closed.size:
            return i + int(closed[0]) + 1
        depth = int(run[-1])
    return -1


def split(body: bytes) -> tuple[Any, list[Span]]:
    """(the body parsed with each numeric array a :class:`Span`, the spans in order)."""
    import json

    raw = np.frombuffer(body, np.uint8)
    tag = f"soilcast-{secrets.token_hex(8)}-"  # no client can guess it
    token = "\x00" + tag  # the parsed placeholder (written escaped: a raw NUL is not JSON)
    parts, spans, i, skeleton, not_numeric = [], [], 0, 0, -1
    while True:
        m = SPECIAL.search(body, i)
        j = len(body) if m is None else m.start()
        skeleton += j - i
        parts.append(body[i:j])
        if m is None:
            break
        if body[j] == ord('"'):
            end = _string_end(body, j)
            skeleton += end - j
            parts.append(body[j:end])
            i = end
        else:
            if not_numeric < j:  # the next object or string (searched forward once per position)
                n = NOT_NUMERIC.search(body, j)
                not_numeric = len(body) if n is None else n.start()
            end = _matching(raw, j, not_numeric)
            if end < 0:  # holds objects or strings: walk into it
                parts.append(b"[")
                i = j + 1
                skeleton += 1
            else:
                parts.append(f'"\\u0000{tag}{len(spans)}"'.encode())
                spans.append(Span(j, end))
                i = end
        if skeleton > MAX_SKELETON:
            raise JsonTensorError(f"more than {MAX_SKELETON} bytes of the body are not arrays of numbers; "
                                  "tensors must be nested arrays of numbers")
    try:
        parsed = json.loads(b"".join(parts))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise JsonTensorError(str(err)) from None
    return _placed(parsed, token, spans), spans


def _placed(value: Any, token: str, spans: list[Span]) -> Any:
    """``value`` with each placeholder string replaced by its span."""
    if isinstance(value, str) and value.startswith(token):
        return spans[int(value[len(token):])]
    if isinstance(value, list):
        return [_placed(v, token, spans) for v in value]
    if isinstance(value, dict):
        return {k: _placed(v, token, spans) for k, v in value.items()}
    return value


def _shape(skeleton: bytes) -> tuple[int, ...]:
    """The shape a bracket skeleton (``[``, ``]``, ``,`` only) describes if it is rectangular,
    from its first element at each depth and its length (:func:`_expected` then checks it):
    only the first element is scanned, so this costs nothing beside the skeleton."""
    if len(skeleton) < 2 or skeleton[0] != OPEN:
        return ()
    if skeleton[1] != OPEN:  # innermost: numbers
        return (skeleton.count(b",") + 1,)
    end = _matching(np.frombuffer(skeleton, np.uint8), 1, len(skeleton))
    if end < 0:
        return ()
    child = skeleton[1:end]
    n, rest = divmod(len(skeleton) - 1, len(child) + 1)
    return (n, *_shape(child)) if rest == 0 else ()


def _skeleton_len(shape: tuple[int, ...]) -> int:
    """Length of :func:`_expected` (checked first: a huge first element beside many tiny
    ones must not make the expected skeleton huge)."""
    n = 0
    for s in reversed(shape):
        n = 2 + s * n + (s - 1)
    return n


def _expected(shape: tuple[int, ...]) -> bytes:
    """The bracket skeleton of a rectangular array of ``shape``."""
    inner = b""
    for n in reversed(shape):
        inner = b"[" + b",".join([inner] * n) + b"]"
    return inner


def decode(body: bytes, span: Span, dtype: Any = np.float32) -> np.ndarray:
    """The rectangular array ``span`` holds, as ``dtype``; JsonTensorError when ragged or
    not numbers (``true``, ``null``, strings)."""
    text = memoryview(body)[span.start:span.end]
    n_max = body.count(b",", span.start, span.end) + 1
    out = np.empty(n_max, dtype)
    shape_text, filled, start = bytearray(), 0, 0
    while start < len(text):
        stop = min(start + CHUNK, len(text))
        if stop < len(text):  # cut right after a comma, so no number is split
            cut = body.rfind(b",", span.start + start, span.start + stop)
            if cut < 0:
                cut = body.find(b",", span.start + stop, span.end)
            stop = cut + 1 - span.start if cut >= 0 else len(text)
        chunk = bytes(text[start:stop])
        shape_text += chunk.translate(None, NUMBER_TEXT)
        numbers = chunk.translate(BRACKETS_AS_SPACES).strip().rstrip(b",")
        if numbers.strip(b" ,"):
            try:
                parsed = np.fromstring(numbers, dtype=dtype, sep=",")
            except ValueError:
                raise JsonTensorError("not a rectangular array of numbers (a value is not a number)") from None
            out[filled:filled + len(parsed)] = parsed
            filled += len(parsed)
        start = stop
    shape_text = bytes(shape_text)
    if shape_text.translate(None, SKELETON_CHARS):
        raise JsonTensorError("not a rectangular array of numbers (it holds true/false/null or other words)")
    if shape_text.replace(b"[", b"").replace(b"]", b"") == b"" and filled == 0:
        return np.zeros(_empty_shape(shape_text), dtype)
    shape = _shape(shape_text)
    if not shape or _skeleton_len(shape) != len(shape_text) or _expected(shape) != shape_text or filled != int(np.prod(shape)):
        raise JsonTensorError(f"not a rectangular array of numbers (ragged: its first elements have shape "
                              f"{list(shape)})")
    return out[:filled].reshape(shape)


def _empty_shape(skeleton: bytes) -> tuple[int, ...]:
    """``[]`` is shape (0,), ``[[]]`` (1, 0): an empty array's shape from its brackets."""
    rank = len(skeleton) // 2
    if skeleton != b"[" * rank + b"]" * rank:
        raise JsonTensorError("not a rectangular array of numbers (empty rows beside others)")
    return (1,) * (rank - 1) + (0,)
