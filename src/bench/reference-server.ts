// The benchmark's reference: a bare node:http server answering every request with a constant 100-byte
// body. It is the ceiling for one Node process on this machine; kvshard's ratios are measured against it.

import http from 'node:http';

const port = Number(process.argv[2]);
const body = Buffer.alloc(100, 0x61);
http
  .createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  })
  .listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
