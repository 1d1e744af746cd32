"""A local S3 stack for tests: two S3 implementations, each over HTTP or HTTPS, and a fault proxy.

Integrity must hold on every S3, not only on the one the code was written against, so the tests run
the pipeline on moto (Python, the reference emulator) and s3rver (Node, a second implementation
with its own reading of the protocol), with and without TLS, and through a proxy that corrupts one
chosen request on the wire. Everything listens on 127.0.0.1 and is removed when stopped.

    tls.py        a self-signed certificate for 127.0.0.1, trusted through AWS_CA_BUNDLE
    s3servers.py  moto and s3rver servers on free loopback ports: start, wait until ready, stop
    proxy.py      a TCP proxy that flips a byte in, drops or delays one chosen HTTP request

Nothing here is imported by the pipeline itself.
"""
