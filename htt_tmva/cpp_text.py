"""Text that goes into generated C++: string literals and comments, encoded so that no
input (a class name, a variable, a path, a model file's field) can end them early.
"""

from __future__ import annotations

_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"\\", '"'}


def cpp_string(text: object) -> str:
    """A C++ string literal holding ``text``'s UTF-8 bytes exactly: printable ASCII as it is,
    everything else (backslash, quote, newline, control and non-ASCII bytes, a ``?`` before
    ``?``: ROOT's interpreter reads trigraphs) as a three-digit octal escape (never more
    digits than those three, unlike ``\\x``)."""
    out = []
    text = str(text)
    for i, char in enumerate(text):
        if char in _PLAIN and not (char == "?" and text[i + 1 : i + 2] == "?"):
            out.append(char)
        else:
            out.extend(f"\\{byte:03o}" for byte in char.encode("utf-8", "surrogatepass"))
    return '"' + "".join(out) + '"'


def cpp_comment(text: object) -> str:
    """``text`` for a ``//`` or ``/* */`` comment: one line of printable ASCII that neither
    ends the comment (``*/``, a newline) nor continues it (a backslash or the trigraph
    ``??/`` before the line end); other characters are shown as ``\\xNN``/``\\uNNNN``."""
    out = []
    text = str(text)
    for i, char in enumerate(text):
        if (char in _PLAIN or char == '"') and not (char == "?" and text[i + 1 : i + 2] == "?"):
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out).replace("*/", "*\\x2f")
