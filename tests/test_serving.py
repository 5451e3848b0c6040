"""The serving pieces that can be tested in this process: the parser that
refuses ambiguous framing (over a socket: test_hardening.py)."""

import pytest
from waitress.adjustments import Adjustments

import service


class Listener:
    channel_class = None


def parse(data):
    """A request through the parser harden() installs, fed as waitress feeds it."""
    listener = Listener()
    service.harden([listener], trust_proxy=None, connections_per_client=100)
    parser = listener.channel_class.parser_class(Adjustments())
    while data and not parser.completed:
        data = data[parser.received(data):]
    return parser


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_content_length_with_chunked_is_a_bad_request(version):
    parser = parse(b"POST / HTTP/" + version + b"\r\nHost: x\r\nContent-Length: 5\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert parser.completed and parser.error is not None
    assert parser.error.code == 400 and "Content-Length and Transfer-Encoding" in parser.error.body


@pytest.mark.parametrize("request_bytes", [
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_ordinary_framing_still_parses(request_bytes):
    parser = parse(request_bytes)
    assert parser.completed and parser.error is None
