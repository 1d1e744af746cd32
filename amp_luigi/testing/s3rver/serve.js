#!/usr/bin/env node
// s3rver on a loopback port with the access key the tests use, for amp_luigi/testing/s3servers.py.
//
// s3rver's command line knows only its built-in key pair (S3RVER/S3RVER), so this registers
// another one on the same dummy account before starting. The key id and secret come from the
// environment, never the command line, which any user of the machine can read. s3rver checks only
// that a SigV4 request names a known key id (it does not compute V4 signatures); V2 is verified.
//
// Usage: S3RVER_ACCESS_KEY_ID=... S3RVER_SECRET_ACCESS_KEY=... \
//        node serve.js --directory DIR --port N [--key key.pem --cert cert.pem]
// It prints one line "listening <port>" once the server accepts connections.
'use strict';

const fs = require('fs');
const S3rver = require('s3rver');
const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');

function argument(name, fallback) {
  const index = process.argv.indexOf(name);
  return index === -1 ? fallback : process.argv[index + 1];
}

const keyId = process.env.S3RVER_ACCESS_KEY_ID;
const secret = process.env.S3RVER_SECRET_ACCESS_KEY;
if (keyId && secret) DUMMY_ACCOUNT.createKeyPair(keyId, secret);

const keyPath = argument('--key');
const certPath = argument('--cert');
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(argument('--port', '0')),
  directory: argument('--directory'),
  silent: !process.argv.includes('--verbose'),
  key: keyPath ? fs.readFileSync(keyPath) : undefined,
  cert: certPath ? fs.readFileSync(certPath) : undefined,
});

server.run().then(
  ({ port }) => console.log(`listening ${port}`),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
// The parent may die without stopping us: a closed stdin is the sign to go.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => server.close().then(() => process.exit(0), () => process.exit(0)));
