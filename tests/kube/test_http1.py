"""The watch reader's HTTP/1.1 parsing: heads, de-chunking and lines, however the bytes are split."""

from __future__ import annotations

import pytest

from bizcloud.kube.http1 import (
    MAX_HEAD_BYTES,
    MAX_LINE_BYTES,
    BodyDecoder,
    MalformedResponse,
    ResponseHead,
    ResponseLines,
    parse_head,
)

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n")
E1 = b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}'
E2 = b'{"type":"MODIFIED","object":{"metadata":{"name":"b\\u00e9"}}}'
E3 = b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}}'


def chunk(data: bytes, extension: bytes = b"") -> bytes:
    return f"{len(data):x}".encode() + extension + b"\r\n" + data + b"\r\n"


def read(response: bytes, splits: list[int]) -> tuple[ResponseLines, list[bytes]]:
    """Feed ``response`` cut at ``splits``; the lines, with the end of the body checked."""
    reader, lines = ResponseLines(), []
    for a, b in zip([0, *splits], [*splits, len(response)], strict=True):
        lines += reader.feed(response[a:b])
    return reader, lines + reader.finish()


# --- whole responses, cut at every position ---------------------------------------------------------

RESPONSES = {
    "one event per chunk": (HEAD + chunk(E1 + b"\n") + chunk(E2 + b"\n") + chunk(E3 + b"\n") + b"0\r\n\r\n",
                            [E1, E2, E3]),
    "an event across three chunks": (HEAD + chunk(E1[:5]) + chunk(E1[5:20]) + chunk(E1[20:] + b"\n")
                                     + b"0\r\n\r\n", [E1]),
    "many events in one chunk": (HEAD + chunk(E1 + b"\n" + E2 + b"\n" + E3 + b"\n") + b"0\r\n\r\n",
                                 [E1, E2, E3]),
    "the newline in a chunk of its own": (HEAD + chunk(E1) + chunk(b"\n") + chunk(E2 + b"\n") + b"0\r\n\r\n",
                                          [E1, E2]),
    "chunk extensions": (HEAD + chunk(E1 + b"\n", b";name=value") + chunk(E2 + b"\n", b' ;q="a;b"')
                         + b"0;last\r\n\r\n", [E1, E2]),
    "upper-case hex and leading zeros": (HEAD + f"{len(E1) + 1:04X}".encode() + b"\r\n" + E1 + b"\n\r\n"
                                         + b"0000\r\n\r\n", [E1]),
    "trailers": (HEAD + chunk(E1 + b"\n") + b"0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n", [E1]),
    "no final newline": (HEAD + chunk(E1 + b"\n" + E2) + b"0\r\n\r\n", [E1, E2]),
    "blank lines dropped": (HEAD + chunk(b"\n" + E1 + b"\n\n \r\n" + E2 + b"\r\n") + b"0\r\n\r\n",
                            [E1, E2 + b"\r"]),
    "Content-Length": (b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(E1) + 1).encode() + b"\r\n\r\n"
                       + E1 + b"\n", [E1]),
    "delimited by the close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + E1 + b"\n" + E2, [E1, E2]),
    "an empty body": (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", []),
}


@pytest.mark.parametrize(("response", "expected"), RESPONSES.values(), ids=RESPONSES.keys())
def test_every_split_position_gives_the_same_lines(response: bytes, expected: list[bytes]) -> None:
    assert read(response, [])[1] == expected
    for cut in range(1, len(response)):
        assert read(response, [cut])[1] == expected, f"cut at {cut}"
    for first in range(1, len(response), 7):
        for second in range(first + 1, len(response), 5):
            assert read(response, [first, second])[1] == expected, f"cut at {first} and {second}"


@pytest.mark.parametrize(("response", "expected"), RESPONSES.values(), ids=RESPONSES.keys())
def test_byte_by_byte(response: bytes, expected: list[bytes]) -> None:
    assert read(response, list(range(1, len(response))))[1] == expected


def test_a_chunked_body_is_done_at_its_last_chunk_and_bytes_after_it_are_not_body() -> None:
    reader = ResponseLines()
    assert reader.feed(HEAD + chunk(E1 + b"\n") + chunk(E2)) == [E1]
    assert not reader.done
    assert reader.feed(b"0\r\n\r\nHTTP/1.1 200 OK\r\n") == [E2], "the last line comes with the end"
    assert reader.done and reader.ok
    assert reader.feed(chunk(E3 + b"\n")) == []


def test_a_content_length_body_stops_at_its_length() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"
    head, start = parse_head(response) or pytest.fail("no head")
    body = BodyDecoder(head)
    assert body.feed(response[start:]) == [b"abc"]
    assert body.done
    assert body.feed(b"more") == []


# --- heads ------------------------------------------------------------------------------------------

HEADS = {
    "ok": (HEAD, ResponseHead(200, "OK", {"content-type": "application/json", "transfer-encoding": "chunked",
                                          "date": "Thu, 01 Jan 2026 00:00:00 GMT"})),
    "no reason": (b"HTTP/1.1 410 \r\n\r\n", ResponseHead(410, "", {})),
    "no reason, no space": (b"HTTP/1.1 500\r\n\r\n", ResponseHead(500, "", {})),
    "HTTP/1.0": (b"HTTP/1.0 200 OK\r\nA: 1\r\n\r\n", ResponseHead(200, "OK", {"a": "1"})),
    "repeated and padded fields": (b"HTTP/1.1 200 OK\r\nWarning:  a \r\nwarning:\tb\r\nEmpty:\r\n\r\n",
                                   ResponseHead(200, "OK", {"warning": "a, b", "empty": ""})),
    "a reason with spaces": (b"HTTP/1.1 422 Unprocessable Entity\r\n\r\n",
                             ResponseHead(422, "Unprocessable Entity", {})),
}


@pytest.mark.parametrize(("raw", "expected"), HEADS.values(), ids=HEADS.keys())
def test_heads(raw: bytes, expected: ResponseHead) -> None:
    assert parse_head(raw + b"body") == (expected, len(raw))
    for cut in range(len(raw) - 1):
        assert parse_head(raw[:cut]) is None


BAD_HEADS = {
    "not HTTP": (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.x status line"),
    "HTTP/2 preface": (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.x status line"),
    "a status that is not three digits": (b"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.x status line"),
    "a status that is not a number": (b"HTTP/1.1 2x0 OK\r\n\r\n", "not an HTTP/1.x status line"),
    "a field without a colon": (b"HTTP/1.1 200 OK\r\nContent-Type\r\n\r\n", "not a header field"),
    "an empty field name": (b"HTTP/1.1 200 OK\r\n: x\r\n\r\n", "not a header field"),
    "space before the colon": (b"HTTP/1.1 200 OK\r\nA : x\r\n\r\n", "not a header field"),
    "an obsolete line folding": (b"HTTP/1.1 200 OK\r\nA: x\r\n  y\r\n\r\n", "not a header field"),
    "a head that never ends": (b"HTTP/1.1 200 OK\r\n" + b"A: x\r\n" * (MAX_HEAD_BYTES // 6 + 1),
                               "no end of the response head"),
}


@pytest.mark.parametrize(("raw", "message"), BAD_HEADS.values(), ids=BAD_HEADS.keys())
def test_bad_heads(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_head(raw)


# --- bad bodies -------------------------------------------------------------------------------------

BAD_BODIES = {
    "a size that is not hex": (b"zz\r\n", "bad chunk size line: b'zz'"),
    "a negative size": (b"-5\r\n", "bad chunk size line"),
    "an empty size": (b"\r\n", "bad chunk size line"),
    "a size with a sign": (b"+5\r\nhello\r\n", "bad chunk size line"),
    "a size too large": (b"1" * 17 + b"\r\n", "bad chunk size line"),
    "a size line that never ends": (b"1" * (MAX_LINE_BYTES + 1), "chunk-size line longer than"),
    "data longer than its size": (b"3\r\nabcd\r\n", "chunk data not followed by CRLF: b'd"),
    "a trailer that never ends": (b"0\r\n" + b"x" * (MAX_LINE_BYTES + 1), "trailer field longer than"),
}


@pytest.mark.parametrize(("body", "message"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_chunked_bodies(body: bytes, message: str) -> None:
    decoder = BodyDecoder(ResponseHead(200, "OK", {"transfer-encoding": "chunked"}))
    with pytest.raises(MalformedResponse, match=message.replace("(", r"\(")):
        decoder.feed(body)


MISSING_END = "the last chunk or the trailers missing"
CUT_SHORT = {
    "inside a chunk": ({"transfer-encoding": "chunked"}, b"5\r\nab", MISSING_END),
    "before the last chunk": ({"transfer-encoding": "chunked"}, chunk(b"abc"), MISSING_END),
    "inside the trailers": ({"transfer-encoding": "chunked"}, b"0\r\nA: b\r\n", MISSING_END),
    "short of Content-Length": ({"content-length": "10"}, b"abc", "7 bytes short of Content-Length"),
}


@pytest.mark.parametrize(("headers", "body", "message"), CUT_SHORT.values(), ids=CUT_SHORT.keys())
def test_a_body_cut_short_is_an_error(headers: dict[str, str], body: bytes, message: str) -> None:
    decoder = BodyDecoder(ResponseHead(200, "OK", headers))
    decoder.feed(body)
    with pytest.raises(MalformedResponse, match=f"closed before the body's end.*{message}"):
        decoder.finish()


UNREADABLE = {
    "gzip transfer coding": ({"transfer-encoding": "gzip, chunked"}, "unsupported Transfer-Encoding"),
    "compressed content": ({"transfer-encoding": "chunked", "content-encoding": "gzip"},
                           "unsupported Content-Encoding 'gzip'"),
    "a length that is not a number": ({"content-length": "12a"}, "Content-Length is not a number"),
    "a negative length": ({"content-length": "-1"}, "Content-Length is not a number"),
}


@pytest.mark.parametrize(("headers", "message"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_framing_we_cannot_read_is_refused_up_front(headers: dict[str, str], message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        BodyDecoder(ResponseHead(200, "OK", headers))


def test_transfer_encoding_wins_over_content_length() -> None:
    """RFC 9112 §6.3: with both, the chunked framing counts (and the length is ignored)."""
    response = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: Chunked\r\n\r\n"
                + chunk(E1 + b"\n") + b"0\r\n\r\n")
    assert read(response, [])[1] == [E1]


# --- whole responses with an error status ---------------------------------------------------------

STATUS_410 = b'{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (20)"}'
ERRORS = {
    "chunked": (b"HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(STATUS_410[:30])
                + chunk(STATUS_410[30:]) + b"0\r\n\r\n", 410, STATUS_410),
    "Content-Length": (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 11\r\n\r\nforbidden\n\n", 403,
                       b"forbidden\n\n"),
    "an empty body": (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", 500, b""),
    "a redirect": (b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 2\r\n\r\nno", 302, b"no"),
}


@pytest.mark.parametrize(("response", "status", "body"), ERRORS.values(), ids=ERRORS.keys())
def test_an_error_body_is_kept_whole_not_split(response: bytes, status: int, body: bytes) -> None:
    for cut in range(1, len(response)):
        reader = ResponseLines()
        assert reader.feed(response[:cut]) + reader.feed(response[cut:]) == []
        assert reader.done and not reader.ok
        assert reader.head is not None and reader.head.status == status
        assert reader.error_body == body


def test_a_huge_error_body_is_kept_up_to_its_bound() -> None:
    reader = ResponseLines(max_error_body=10)
    reader.feed(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"x" * 8) * 3)
    assert reader.error_body == b"x" * 10
    assert not reader.done


@pytest.mark.parametrize("cut", [0, 5, len(HEAD) - 1],
                         ids=["nothing", "in the status line", "in the headers"])
def test_a_connection_closed_before_the_head_is_an_error(cut: int) -> None:
    reader = ResponseLines()
    reader.feed(HEAD[:cut])
    with pytest.raises(MalformedResponse, match="closed before the response head"):
        reader.finish()
