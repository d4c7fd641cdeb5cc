"""Splitting text into user-perceived characters (extended grapheme clusters). Pure.

go-cty counts and slices strings by grapheme cluster (``strlen``, ``substr``,
``reverse``, ``format`` widths). This follows UAX #29 for the cases that occur in
practice: CR LF, combining and spacing marks, variation selectors and emoji modifiers,
zero-width-joiner emoji sequences, regional-indicator flag pairs and Hangul syllable
sequences. (The "Prepend" class of a few Indic scripts is not joined; see
docs/bake.md.)
"""

from __future__ import annotations

import unicodedata


def _is_extend(c: str) -> bool:
    o = ord(c)
    if o == 0x200D or 0xFE00 <= o <= 0xFE0F or 0x1F3FB <= o <= 0x1F3FF:
        return True
    if 0xE0020 <= o <= 0xE007F or 0xE0100 <= o <= 0xE01EF:
        return True
    return unicodedata.category(c) in ("Mn", "Me", "Mc")


def _is_control(c: str) -> bool:
    return c in "\r\n" or unicodedata.category(c) in ("Cc", "Zl", "Zp")


def _is_regional(c: str) -> bool:
    return 0x1F1E6 <= ord(c) <= 0x1F1FF


def _is_pictographic(c: str) -> bool:
    o = ord(c)
    return (
        0x1F000 <= o <= 0x1FAFF
        or 0x2600 <= o <= 0x27BF
        or 0x2300 <= o <= 0x23FF
        or o in (0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x3030, 0x303D)
    )


def _hangul(c: str) -> str:
    o = ord(c)
    if 0x1100 <= o <= 0x115F or 0xA960 <= o <= 0xA97C:
        return "L"
    if 0x1160 <= o <= 0x11A7 or 0xD7B0 <= o <= 0xD7C6:
        return "V"
    if 0x11A8 <= o <= 0x11FF or 0xD7CB <= o <= 0xD7FB:
        return "T"
    if 0xAC00 <= o <= 0xD7A3:
        return "LV" if (o - 0xAC00) % 28 == 0 else "LVT"
    return ""


def _joins(prev: str, cur: str, cluster: str) -> bool:
    if prev == "\r" and cur == "\n":
        return True
    if _is_control(prev) or _is_control(cur):
        return False
    hp, hc = _hangul(prev), _hangul(cur)
    if hp == "L" and hc in ("L", "V", "LV", "LVT"):
        return True
    if hp in ("LV", "V") and hc in ("V", "T"):
        return True
    if hp in ("LVT", "T") and hc == "T":
        return True
    if _is_extend(cur):
        return True
    if prev == "\u200d" and _is_pictographic(cur):
        base = cluster.rstrip("".join(ch for ch in cluster if _is_extend(ch)))
        return bool(base) and _is_pictographic(base[-1])
    if _is_regional(prev) and _is_regional(cur):
        count = 0
        for ch in reversed(cluster):
            if not _is_regional(ch):
                break
            count += 1
        return count % 2 == 1
    return False


def clusters(text: str) -> list[str]:
    """``text`` as its grapheme clusters, in order."""
    if text.isascii() and "\r\n" not in text:
        return list(text)
    out: list[str] = []
    for c in text:
        if out and _joins(out[-1][-1], c, out[-1]):
            out[-1] += c
        else:
            out.append(c)
    return out


def count(text: str) -> int:
    return len(clusters(text))
