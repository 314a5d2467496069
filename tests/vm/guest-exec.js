// Runs inside the test VM: a tiny command server the host-side e2e tests use to act
// on the guest (dd, losetup, starting and killing the agent). Listens on the guest's
// port 7070, forwarded to the host's loopback by tests/vm/run --fwd. Test-only.
'use strict';
const http = require('node:http');
const { spawn } = require('node:child_process');

const port = Number(process.argv[2] || 7070);
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    if (req.url === '/quit') {
      res.end('{}');
      server.close();
      setTimeout(() => process.exit(0), 50);
      return;
    }
    const { cmd, timeoutMs = 60000 } = JSON.parse(body || '{}');
    const child = spawn('/bin/bash', ['-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(t);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ code: code ?? 128, signal, stdout, stderr }));
    });
  });
});
server.listen(port, '0.0.0.0', () => console.log(`guest-exec ready on ${port}`));
