"""The local stack the sandbox, the tests and the benchmarks share: S3 servers, luigid, environment.

Integrity must hold on every S3, not only on the one the code was written against, so the tests run
the pipeline on moto (Python, the reference emulator) and s3rver (Node, a second implementation
with its own reading of the protocol), with and without TLS, and through a proxy that corrupts one
chosen request on the wire. Everything listens on 127.0.0.1 and is removed when stopped.

    local.py      free ports, a deployment's environment, a boto3 client as the pipeline sees S3, luigid
    tls.py        a self-signed certificate for 127.0.0.1, trusted through AWS_CA_BUNDLE
    s3servers.py  moto (in a thread, or its own process for benchmarks) and s3rver on loopback ports
    proxy.py      a TCP proxy that flips a byte in, drops or delays one chosen HTTP request

Nothing here is imported by the pipeline itself. The Amplitude emulator is amp_luigi.emulator.
"""
