/**
 * A plain TCP relay in Node (no TLS, no framing): `node plain-relay.js LISTEN_PORT TARGET_PORT`.
 * The reference for --compare: what one userspace hop costs on this machine.
 */
import { connect, createServer } from 'node:net';

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
  const upstream = connect({
    host: '127.0.0.1',
    port: targetPort ?? 0,
    noDelay: true,
    allowHalfOpen: true,
  });
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.pipe(upstream);
  upstream.pipe(client);
}).listen(listenPort, '127.0.0.1');
