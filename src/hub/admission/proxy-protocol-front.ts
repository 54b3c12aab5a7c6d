import { BlockList, createServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import type { Server } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { DstreamError } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { parseProxyHeader } from '../../protocol/proxy-protocol.js';

/** Parse `--proxy-protocol-from 10.0.0.0/8,127.0.0.1,::1/128` into a matcher. */
export function parseTrustedSources(text: string): BlockList {
  const list = new BlockList();
  for (const item of text.split(',').map((s) => s.trim())) {
    const [address = '', prefix] = item.split('/');
    const family = isIP(address);
    const bits = prefix === undefined ? (family === 6 ? 128 : 32) : Number(prefix);
    if (
      family === 0 ||
      (prefix !== undefined && !/^\d{1,3}$/.test(prefix)) ||
      bits > (family === 6 ? 128 : 32)
    )
      throw new DstreamError(
        'ERR_USAGE',
        `--proxy-protocol-from ${item}: expected an address or CIDR, e.g. 10.0.0.0/8 or ::1`,
      );
    list.addSubnet(address, bits, family === 6 ? 'ipv6' : 'ipv4');
  }
  return list;
}

function isTrusted(list: BlockList, address: string | undefined): boolean {
  if (address === undefined) return false;
  return list.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** Make `socket` report the client's address instead of the balancer's. */
function setClientAddress(socket: Socket, address: string, port: number): void {
  Object.defineProperties(socket, {
    remoteAddress: { value: address, configurable: true },
    remotePort: { value: port, configurable: true },
    remoteFamily: { value: isIP(address) === 6 ? 'IPv6' : 'IPv4', configurable: true },
  });
}

export interface ProxyFrontOptions {
  /** Sources allowed to send a PROXY header (the balancers). */
  readonly trusted: BlockList;
  /** The hub's HTTP(S) server, which gets each connection once its header is read. */
  readonly server: Server;
  readonly tls: boolean;
  /** A connection must have said what it is within this time. */
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/**
 * A TCP listener in front of the hub's server that reads the PROXY protocol header (v1 or v2)
 * from trusted balancers and makes the connection carry the client's address, so per-address
 * limits, throttles and the audit log see the client rather than the balancer. A trusted source
 * may also connect without a header (its own address then counts); anyone else who sends one
 * is refused, so a client cannot claim another's address.
 */
export function createProxyFront(options: ProxyFrontOptions): NetServer {
  const { server, logger } = options;
  // The TLS socket a request arrives on is not the TCP socket read here, and it reports the
  // kernel's peer (the balancer): it is given the client's address when its handshake is done.
  const clients = new Map<string, { address: string; port: number }>();
  if (options.tls)
    server.prependListener('secureConnection', (tls: TLSSocket) => {
      const client = clients.get(`${tls.remoteAddress ?? ''}|${tls.remotePort ?? 0}`);
      if (client) setClientAddress(tls, client.address, client.port);
    });

  // As http.Server makes its own sockets: half-open allowed, no Nagle.
  return createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    socket.on('error', (error) => logger.debug('connection error', { error: error.message }));
    const peer = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const trusted = isTrusted(options.trusted, peer.address);
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), options.timeoutMs);
    timer.unref();
    const refuse = (message: string, fields: Record<string, unknown>): void => {
      logger.warn(message, { remote: peer.address, ...fields });
      socket.destroy();
    };
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const header = parseProxyHeader(buffered);
      if (header.kind === 'incomplete') return;
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      clearTimeout(timer);
      let rest = buffered;
      if (header.kind !== 'none') {
        if (!trusted)
          return refuse('connection refused: a PROXY header from an untrusted address', {
            hint: 'add the balancer to --proxy-protocol-from',
          });
        if (header.kind === 'invalid')
          return refuse('connection refused: bad PROXY header', { reason: header.reason });
        if (header.source) {
          const key = `${peer.address}|${peer.port}`;
          clients.set(key, header.source);
          socket.once('close', () => clients.delete(key));
          setClientAddress(socket, header.source.address, header.source.port);
        }
        rest = buffered.subarray(header.length);
      }
      if (rest.length > 0) socket.unshift(rest);
      server.emit('connection', socket);
      // A TLS socket takes over the handle and reads what was unshifted itself; the plain
      // HTTP parser reads the unshifted bytes only as 'data' events, so the stream must flow.
      if (!options.tls) socket.resume();
    };
    const onEnd = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
  });
}
