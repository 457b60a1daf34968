"""A bounded multipart/form-data reader: flat parts only, few of them, small headers, linear time."""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

MAX_PARTS = 16
MAX_PART_HEADER_BYTES = 8 * 1024
_BOUNDARY_CHARS = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./:=? ")


class MultipartError(ValueError):
    """A multipart body refused, with the reason for the client."""


def _boundary(content_type: str) -> bytes:
    """The boundary parameter of a multipart/form-data Content-Type (RFC 2046: 1-70 safe characters)."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise MultipartError("multipart body without a boundary")
    raw = boundary.encode("latin-1", "replace")
    if len(raw) > 70 or not set(raw) <= _BOUNDARY_CHARS or raw.endswith(b" "):
        raise MultipartError("malformed multipart boundary")
    return raw


def _part_headers(block: bytes) -> Message:
    """Parse one part's header block (headers only, never a nested body)."""
    if len(block) > MAX_PART_HEADER_BYTES:
        raise MultipartError("multipart part headers too long")
    return BytesParser(policy=HTTP).parsebytes(block + b"\r\n\r\n", headersonly=True)


def multipart_file(content_type: str, body: bytes, field: str = "file") -> bytes:
    """The content of the `field` part; nested multiparts and more than MAX_PARTS parts are refused."""
    content = multipart_field(content_type, body, field)
    if content is None:
        raise MultipartError(f"multipart body has no '{field}' field")
    return content


def multipart_field(content_type: str, body: bytes, field: str) -> bytes | None:
    """The content of the `field` part, or None when there is none; malformed bodies are refused."""
    delimiter = b"--" + _boundary(content_type)
    # bytes.count and split are linear in C: the part count is bounded before any part is looked at.
    if body.count(delimiter) > MAX_PARTS + 1:
        raise MultipartError(f"multipart body with more than {MAX_PARTS} parts")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise MultipartError("malformed multipart body")
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        if not piece.startswith(b"\r\n"):
            raise MultipartError("malformed multipart body")
        block, separator, content = piece[2:].partition(b"\r\n\r\n")
        if not separator:
            raise MultipartError("malformed multipart part")
        headers = _part_headers(block)
        if headers.get_param("name", header="content-disposition") != field:
            continue
        if headers.get_content_maintype() == "multipart":
            raise MultipartError("nested multipart bodies are not accepted")
        return content[:-2] if content.endswith(b"\r\n") else content
    return None
