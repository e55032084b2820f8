#!/usr/bin/env python3
"""A recording HTTP/1.1 relay, the helper of scripts/record-old-client.sh.

    record_relay.py UPSTREAM_HOST:PORT OUT_DIR

Listens on a free port of 127.0.0.1 (printed as "listening on 127.0.0.1:PORT" on standard
output), and relays every HTTP/1.1 exchange to UPSTREAM, one upstream connection per client
connection. Each request is read whole (head, then a body by Content-Length or chunked framing)
before it is sent on, and each answer is read whole before it is sent back, so the two are
written exactly as they travelled: OUT_DIR/NNN.request and OUT_DIR/NNN.response, raw bytes,
numbered from 001 in the order the exchanges completed. It knows no Cairn route; it stops when
killed. Not for event streams (their answer never ends).
"""

import os
import socket
import sys
import threading

lock = threading.Lock()
count = 0


def read_line(reader):
    line = reader.readline(65536)
    if line and not line.endswith(b"\r\n"):
        raise ValueError("a header line without CRLF")
    return line


def read_message(reader, method=None):
    """One whole message as raw bytes; None at a clean end of the connection.

    `method` is None for a request, else the method of the request this answers."""
    head = b""
    while True:
        line = read_line(reader)
        if not line:
            if head:
                raise ValueError("the connection ended inside a message head")
            return None
        head += line
        if line == b"\r\n":
            break
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip()
    if method is not None:
        status = int(lines[0].split(b" ")[1])
        if status < 200 or status in (204, 304) or method == b"HEAD":
            return head
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size_line = read_line(reader)
            body += size_line
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while True:
                    trailer = read_line(reader)
                    body += trailer
                    if trailer == b"\r\n":
                        return head + body
            body += reader.read(size + 2)
    if b"content-length" in headers:
        return head + reader.read(int(headers[b"content-length"]))
    if method is not None:
        return head + reader.read()
    return head


def relay(client, upstream_address, out_dir):
    global count
    upstream = socket.create_connection(upstream_address)
    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    from_client = client.makefile("rb")
    from_upstream = upstream.makefile("rb")
    try:
        while True:
            request = read_message(from_client)
            if request is None:
                break
            upstream.sendall(request)
            response = read_message(from_upstream, request.split(b" ", 1)[0])
            if response is None:
                break
            client.sendall(response)
            with lock:
                count += 1
                base = os.path.join(out_dir, "%03d" % count)
                with open(base + ".request", "wb") as file:
                    file.write(request)
                with open(base + ".response", "wb") as file:
                    file.write(response)
    except (OSError, ValueError) as error:
        print("record_relay: %s" % error, file=sys.stderr)
    finally:
        client.close()
        upstream.close()


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    out_dir = sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(
            target=relay, args=(client, (host, int(port)), out_dir), daemon=True
        ).start()


if __name__ == "__main__":
    main()
