"""Encodings, hashes and identifiers: JSON, CSV, base64, URL, md5/sha*, bcrypt,
rsadecrypt, uuidv4/uuidv5. Pure apart from the randomness of ``bcrypt`` salts and
``uuidv4`` (marked volatile).

JSON text is go-cty's: object keys sorted, numbers in their shortest decimal form,
strings escaped as Go's ``encoding/json`` does (``<``, ``>`` and ``&`` as ``\\u003c``...).
Decoded JSON gives objects and tuples, as go-cty's implied types do.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import re
import urllib.parse
import uuid
from fractions import Fraction

from pipeline.hcl import cty
from pipeline.hcl.cty import BLOCK, DYNAMIC, NUMBER, STRING, V
from pipeline.hcl.fnbase import ArgError, FunctionError, Param, fn, text, whole
from pipeline.hcl.numbers import format_number, parse_decimal

S = Param("str", STRING)

# --------------------------------------------------------------------------- JSON

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def quote_json_string(s: str) -> str:
    """``s`` as Go's ``json.Marshal`` writes a string."""
    out = json.dumps(s, ensure_ascii=False)
    return "".join(_GO_ESCAPES.get(c, c) for c in out)


def json_text(value: V) -> str:
    """``value`` as compact JSON (go-cty's ``json.Marshal``)."""
    data = value.data
    if data is None:
        return "null"
    if value.type == BLOCK:
        raise FunctionError(f"cannot encode the block reference {getattr(data, 'id', data)}")
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, Fraction):
        return format_number(data)
    if isinstance(data, str):
        return quote_json_string(data)
    if isinstance(data, tuple):
        return "[" + ",".join(json_text(v) for v in data) + "]"
    assert isinstance(data, dict)
    return "{" + ",".join(f"{quote_json_string(k)}:{json_text(v)}" for k, v in data.items()) + "}"


def _decoded(data: object) -> V:
    if data is None:
        return cty.NULL
    if isinstance(data, bool):
        return cty.boolean(data)
    if isinstance(data, Fraction):
        return cty.V(NUMBER, data)
    if isinstance(data, str):
        return text(data)
    if isinstance(data, list):
        return cty.tuple_of(_decoded(v) for v in data)
    assert isinstance(data, dict)
    return cty.object_of({k: _decoded(v) for k, v in data.items()})


def _number(raw: str) -> Fraction:
    parsed = parse_decimal(raw)
    if parsed is None:
        raise ValueError(f"invalid number {raw}")
    return parsed


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'duplicate "{key}" property in JSON object')
        out[key] = value
    return out


def parse_json(source: str) -> V:
    """A JSON document as a value; ValueError with a message on bad JSON."""
    try:
        data = json.loads(
            source,
            parse_float=_number,
            parse_int=_number,
            parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"invalid JSON {c}")),
            object_pairs_hook=_pairs,
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    return _decoded(data)


@fn("jsonencode", Param("val", DYNAMIC, allow_null=True))
def _fn_jsonencode(value: V) -> V:
    return text(json_text(value))


@fn("jsondecode", S)
def _fn_jsondecode(s: V) -> V:
    try:
        return parse_json(s.text)
    except ValueError as exc:
        raise ArgError(0, f"is not valid JSON: {exc}") from None


# --------------------------------------------------------------------------- CSV


@fn("csvdecode", S)
def _fn_csvdecode(s: V) -> V:
    rows = [r for r in _csv_rows(s.text) if r != [""] or False]
    if not rows:
        raise FunctionError("missing header line")
    header = rows[0]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise FunctionError(f'duplicate column name "{name}"')
        seen.add(name)
    row_type = cty.ObjectType.of(dict.fromkeys(header, STRING))
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise FunctionError(f"CSV parse error on line {line}: wrong number of fields")
        out.append(cty.object_of({h: text(v) for h, v in zip(header, row, strict=True)}))
    return cty.list_of(row_type, out)


def _csv_rows(source: str) -> list[list[str]]:
    reader = csv.reader(io.StringIO(source), strict=True)
    try:
        return [row for row in reader if row]
    except csv.Error as exc:
        raise FunctionError(f"CSV parse error on line {reader.line_num}: {exc}") from None


# --------------------------------------------------------------------------- base64, URL


@fn("base64encode", S)
def _fn_base64encode(s: V) -> V:
    return text(base64.b64encode(s.text.encode()).decode("ascii"))


@fn("base64decode", S)
def _fn_base64decode(s: V) -> V:
    raw = s.text.replace("\r", "").replace("\n", "")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ArgError(0, "is not valid base64") from None
    try:
        return text(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise FunctionError("the decoded bytes are not UTF-8 text") from None


@fn("urlencode", S)
def _fn_urlencode(s: V) -> V:
    return text(urllib.parse.quote_plus(s.text, safe="-_.~"))


# --------------------------------------------------------------------------- hashes


def _hash(name: str) -> None:
    @fn(name, S)
    def impl(s: V) -> V:
        return text(hashlib.new(name, s.text.encode()).hexdigest())


for _name in ("md5", "sha1", "sha256", "sha512"):
    _hash(_name)


@fn("bcrypt", S, var=Param("cost", NUMBER), volatile=True)
def _fn_bcrypt(s: V, *cost: V) -> V:
    if len(cost) > 1:
        raise FunctionError(f"expected 1 or 2 arguments, got {1 + len(cost)}")
    rounds = whole(cost[0], 1) if cost else 10
    if not 4 <= rounds <= 31:
        raise ArgError(1, f"must be between 4 and 31, found {rounds}")
    password = s.text.encode()
    if len(password) > 72:
        raise ArgError(0, "is longer than 72 bytes, which bcrypt cannot hash")
    import bcrypt

    return text(bcrypt.hashpw(password, bcrypt.gensalt(rounds, prefix=b"2a")).decode())


# --------------------------------------------------------------------------- RSA


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated key")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated key")
    return tag, pos, pos + length


def _pkcs1_key(pem: str) -> tuple[int, int]:
    """(modulus, private exponent) of a PEM ``RSA PRIVATE KEY`` (PKCS #1)."""
    m = re.search(r"-----BEGIN RSA PRIVATE KEY-----(.*?)-----END RSA PRIVATE KEY-----", pem, re.S)
    if m is None:
        raise ValueError("no RSA PRIVATE KEY block found")
    body = m.group(1)
    if "Proc-Type: 4,ENCRYPTED" in body:
        raise ValueError("the private key is encrypted with a passphrase, which is not supported")
    body = "\n".join(line for line in body.strip().splitlines() if ":" not in line)
    der = base64.b64decode("".join(body.split()), validate=True)
    tag, pos, end = _der(der, 0)
    if tag != 0x30:
        raise ValueError("not a PKCS #1 key")
    numbers: list[int] = []
    while pos < end and len(numbers) < 4:
        tag, start, stop = _der(der, pos)
        if tag != 0x02:
            raise ValueError("not a PKCS #1 key")
        numbers.append(int.from_bytes(der[start:stop], "big"))
        pos = stop
    if len(numbers) < 4:
        raise ValueError("not a PKCS #1 key")
    _version, modulus, _public, private = numbers
    return modulus, private


@fn("rsadecrypt", Param("ciphertext", STRING), Param("privatekey", STRING))
def _fn_rsadecrypt(ciphertext: V, key: V) -> V:
    try:
        data = base64.b64decode(ciphertext.text, validate=True)
    except (binascii.Error, ValueError):
        raise ArgError(0, "is not valid base64") from None
    try:
        modulus, private = _pkcs1_key(key.text)
    except (ValueError, binascii.Error) as exc:
        raise ArgError(1, f"is not a usable private key: {exc}") from None
    k = (modulus.bit_length() + 7) // 8
    c = int.from_bytes(data, "big")
    if len(data) != k or c >= modulus:
        raise FunctionError("decryption error")
    em = pow(c, private, modulus).to_bytes(k, "big")
    sep = em.find(b"\x00", 2)
    if em[0] != 0 or em[1] != 2 or sep < 10:
        raise FunctionError("decryption error")
    try:
        return text(em[sep + 1 :].decode("utf-8"))
    except UnicodeDecodeError:
        raise FunctionError("the decrypted bytes are not UTF-8 text") from None


# --------------------------------------------------------------------------- UUIDs


@fn("uuidv4", volatile=True)
def _fn_uuidv4() -> V:
    return text(str(uuid.uuid4()))


_NAMESPACES = {
    "dns": uuid.NAMESPACE_DNS,
    "url": uuid.NAMESPACE_URL,
    "oid": uuid.NAMESPACE_OID,
    "x500": uuid.NAMESPACE_X500,
}


@fn("uuidv5", Param("namespace", STRING), Param("name", STRING))
def _fn_uuidv5(namespace: V, name: V) -> V:
    space = _NAMESPACES.get(namespace.text)
    if space is None:
        try:
            space = uuid.UUID(namespace.text)
        except ValueError:
            raise ArgError(0, f"is not a namespace: {cty.show(namespace)}") from None
    return text(str(uuid.uuid5(space, name.text)))
