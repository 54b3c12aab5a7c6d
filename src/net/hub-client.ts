import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import {
  connect as tlsConnect,
  createSecureContext,
  type SecureContext,
  type TLSSocket,
} from 'node:tls';
import WebSocket from 'ws';
import { formatFingerprint } from '../auth/connection-string.js';
import { DstreamError, describeError } from '../errors.js';

/** How a client trusts the hub it talks to. */
export interface HubTrust {
  /** False only for hubs run with --insecure-no-tls. */
  readonly tls: boolean;
  /** Pin: accept exactly the certificate with this SHA-256 fingerprint (64 hex digits). */
  readonly fingerprint?: string | undefined;
  /** Extra CA certificates (PEM) to verify the hub with, instead of the system's. */
  readonly ca?: string | undefined;
}

export interface HubTarget extends HubTrust {
  readonly host: string;
  readonly port: number;
}

const certErrors = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function where(target: HubTarget): string {
  return `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
}

function connectError(target: HubTarget, error: unknown): DstreamError {
  const code = (error as { code?: string }).code ?? '';
  if (certErrors.has(code))
    return new DstreamError(
      'ERR_TLS_VERIFY',
      `cannot verify the hub's certificate at ${where(target)}: ${describeError(error)}`,
      {
        hint: 'Use the connection string the hub printed (it pins the certificate), or pass --ca FILE.',
        cause: error,
      },
    );
  return new DstreamError(
    'ERR_HUB_UNREACHABLE',
    `cannot reach the hub at ${where(target)}: ${describeError(error)}`,
    {
      hint: 'Check that the hub is running and that HostName in the connection string is right.',
      cause: error,
    },
  );
}

// Building a SecureContext loads the system CA store: about a millisecond of CPU that every
// connection would otherwise pay (a proxy makes two per stream). One per kind of trust.
const contexts = new Map<string, SecureContext>();
function secureContextFor(pinned: boolean, ca: string | undefined): SecureContext {
  const key = pinned ? 'pinned' : `ca:${ca ?? ''}`;
  let context = contexts.get(key);
  if (!context) {
    context = createSecureContext({
      minVersion: 'TLSv1.2',
      ...(ca !== undefined && !pinned ? { ca } : {}),
    });
    contexts.set(key, context);
  }
  return context;
}

/**
 * Open a TCP (and TLS) connection to the hub and verify it before anything is sent on it.
 * With a pinned fingerprint the certificate chain is not checked, only the exact certificate:
 * Node calls checkServerIdentity only after chain verification succeeded, so the pin is checked
 * here, once the handshake is done and before any HTTP byte is written.
 */
export function connectToHub(target: HubTarget, timeoutMs = 15_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let socket: Socket | TLSSocket;
    const fail = (error: DstreamError): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(
      () =>
        fail(
          new DstreamError(
            'ERR_HUB_UNREACHABLE',
            `timed out connecting to the hub at ${where(target)}`,
          ),
        ),
      timeoutMs,
    );
    const ready = (): void => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      // Keep a listener so a later error cannot crash the process before the owner attaches its own.
      socket.on('error', () => undefined);
      socket.setNoDelay(true);
      resolve(socket);
    };
    const onError = (error: Error): void => fail(connectError(target, error));
    if (!target.tls) {
      socket = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
      socket.once('error', onError);
      socket.once('connect', ready);
      return;
    }
    const pinned = target.fingerprint !== undefined;
    const tlsSocket = tlsConnect({
      host: target.host,
      port: target.port,
      servername: isIP(target.host) ? undefined : target.host,
      secureContext: secureContextFor(pinned, target.ca),
      ALPNProtocols: ['http/1.1'],
      rejectUnauthorized: !pinned,
    });
    socket = tlsSocket;
    tlsSocket.once('error', onError);
    tlsSocket.once('secureConnect', () => {
      if (pinned) {
        // getPeerX509Certificate, not getPeerCertificate: the latter builds an object of every
        // field, a measurable cost when a proxy opens hundreds of streams a second.
        const seen = tlsSocket.getPeerX509Certificate()?.fingerprint256.replace(/:/g, '') ?? '';
        if (seen !== target.fingerprint) {
          fail(
            new DstreamError(
              'ERR_TLS_FINGERPRINT_MISMATCH',
              `the hub at ${where(target)} presented a certificate with fingerprint ${seen ? formatFingerprint(seen) : 'none'}, not the pinned one (${formatFingerprint(target.fingerprint)})`,
              {
                hint: 'If the hub was set up again or its certificate replaced (the hub logs its fingerprint at start), get a fresh connection string from `dstream hub init` or `dstream device show ID`; otherwise someone may be intercepting the connection.',
              },
            ),
          );
          return;
        }
      }
      ready();
    });
  });
}

export interface HubResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

export interface HubRequest {
  readonly method: string;
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

const maxResponseBytes = 4 * 1024 * 1024;

/** How long a spare connection is used (and kept) after it was opened. */
const spareLifeMs = 5000;

/**
 * Kept-alive connections to one hub, each verified (pin or CA) before its first request, for a
 * process that initiates streams again and again (the proxy): a stream then costs one TLS
 * handshake (its WebSocket) instead of two. Idle connections close after 4 s, before the hub's
 * 5 s keep-alive timeout, so a request rarely meets a connection the hub is closing.
 */
export class HubConnectionPool {
  readonly agent: Agent;
  /**
   * One spare per address: the hub's own, and in a cluster each node a streaming URL named
   * (stream sockets go to the node that holds the device, not to the balancer).
   */
  readonly #spares = new Map<
    string,
    { readonly socket: Promise<Socket>; readonly since: number }
  >();
  #closed = false;

  constructor(readonly target: HubTarget) {
    this.agent = new Agent({ keepAlive: true, timeout: 4000, maxFreeSockets: 16 });
    // Async form: the socket is handed to HTTP only once connectToHub has verified it.
    this.agent.createConnection = (_options, callback) => {
      connectToHub(target).then(
        (socket) => callback?.(null, socket),
        (error: Error) => callback?.(error, undefined as never),
      );
      return undefined;
    };
  }

  /**
   * A verified connection for a stream WebSocket to `target` (default: the hub's address): the
   * spare opened after the previous one to that address (so the TLS handshake is off the
   * stream's setup path), or a new one. Each take starts the next spare; an idle spare is not
   * renewed, and one older than 5 s is not used but closed (the hub drops connections that
   * send nothing for --headers-timeout, 15 s by default).
   */
  async takeConnection(
    timeoutMs?: number,
    target: HubTarget = this.target,
  ): Promise<{ socket: Socket; spare: boolean }> {
    const key = addressKey(target);
    const spare = this.#spares.get(key);
    this.#spares.delete(key);
    this.#refill(key, target);
    if (spare) {
      const socket = await spare.socket.catch(() => undefined);
      if (socket && !socket.destroyed && Date.now() - spare.since < spareLifeMs)
        return { socket, spare: true };
      socket?.destroy();
    }
    return { socket: await connectToHub(target, timeoutMs), spare: false };
  }

  #refill(key: string, target: HubTarget): void {
    if (this.#closed) return;
    const socket = connectToHub(target);
    const entry = { socket, since: Date.now() };
    this.#spares.set(key, entry);
    const forget = (): void => {
      if (this.#spares.get(key) === entry) this.#spares.delete(key);
    };
    socket.then((s) => {
      // Past its use-by time a spare is only a descriptor at both ends (the hub would drop it
      // at its headers timeout, 15 s): say, a device's spare to a node it has just left. Its
      // close forgets it.
      const expire = setTimeout(() => {
        if (this.#spares.get(key) === entry) s.destroy();
      }, spareLifeMs);
      expire.unref();
      s.once('close', () => {
        clearTimeout(expire);
        forget();
      });
      if (this.#closed) s.destroy();
    }, forget);
  }

  /**
   * Can a stream socket to `target` use this pool? Any address, as long as it is verified as
   * this hub is (the same pin or CA): a streaming URL may name a cluster node.
   */
  serves(target: HubTarget): boolean {
    return (
      target.tls === this.target.tls &&
      target.fingerprint === this.target.fingerprint &&
      target.ca === this.target.ca
    );
  }

  close(): void {
    this.#closed = true;
    for (const spare of this.#spares.values())
      void spare.socket.then(
        (s) => s.destroy(),
        () => undefined,
      );
    this.#spares.clear();
    this.agent.destroy();
  }
}

function addressKey(target: HubTarget): string {
  return `${target.tls ? 'tls' : 'tcp'}:${target.host}:${target.port}`;
}

/**
 * One HTTP request to the hub: over a freshly verified connection, closed after the response,
 * or over a kept-alive one from `pool`.
 */
export async function hubRequest(
  target: HubTarget,
  req: HubRequest,
  pool?: HubConnectionPool,
): Promise<HubResponse> {
  try {
    return await requestOnce(target, req, pool);
  } catch (error) {
    // A kept-alive connection the hub closed just as we reused it: the request never reached
    // the hub (it closes idle connections only), so sending it again is safe.
    if (pool && (error as { reusedSocket?: boolean }).reusedSocket === true)
      return requestOnce(target, req, pool);
    throw error;
  }
}

async function requestOnce(
  target: HubTarget,
  req: HubRequest,
  pool: HubConnectionPool | undefined,
): Promise<HubResponse> {
  const socket = pool ? undefined : await connectToHub(target, req.timeoutMs);
  return new Promise((resolve, reject) => {
    const r = request({
      host: target.host,
      port: target.port,
      method: req.method,
      path: req.path,
      headers: {
        host: where(target),
        connection: socket ? 'close' : 'keep-alive',
        ...(req.body !== undefined
          ? {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(req.body).toString(),
            }
          : {}),
        ...req.headers,
      },
      timeout: req.timeoutMs ?? 120_000,
      signal: req.signal,
      ...(socket ? { createConnection: () => socket } : { agent: pool?.agent }),
    });
    r.on('timeout', () =>
      r.destroy(
        new DstreamError('ERR_TIMEOUT', `the hub did not answer ${req.method} ${req.path} in time`),
      ),
    );
    r.on('error', (error) => {
      socket?.destroy();
      if (r.reusedSocket && (error as { code?: string }).code === 'ECONNRESET') {
        reject(Object.assign(error, { reusedSocket: true }));
        return;
      }
      reject(
        error instanceof DstreamError || (error as { name?: string }).name === 'AbortError'
          ? error
          : connectError(target, error),
      );
    });
    r.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxResponseBytes)
          r.destroy(new DstreamError('ERR_HUB_RESPONSE', 'the hub sent an oversized response'));
        else chunks.push(chunk);
      });
      res.on('end', () => {
        socket?.destroy();
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        });
      });
      res.on('error', reject);
    });
    r.end(req.body);
  });
}

export interface OpenWebSocketOptions {
  readonly headers: Readonly<Record<string, string>>;
  readonly protocols: readonly string[];
  readonly timeoutMs?: number;
  readonly maxPayload?: number;
  /** Take the connection from this pool (its spare) when the URL names the pool's hub. */
  readonly pool?: HubConnectionPool | undefined;
  /** The headers of the hub's answer to the upgrade (101), before the socket opens. */
  readonly onUpgrade?: ((headers: IncomingHttpHeaders) => void) | undefined;
}

/** What the hub answered instead of upgrading a WebSocket. */
export class UpgradeRefusedError extends Error {
  override readonly name = 'UpgradeRefusedError';
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`the hub refused with ${status}${body ? `: ${body}` : ''}`);
  }
}

/**
 * Open a WebSocket to `url` (wss://, or ws:// only when the trust says the hub has no TLS)
 * over a verified connection. Resolves once OPEN, and paused: attach listeners, then call
 * resume(). An 'error' listener is attached from birth.
 */
export async function openWebSocket(
  url: string,
  trust: HubTrust,
  options: OpenWebSocketOptions,
): Promise<WebSocket> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new DstreamError('ERR_PROTOCOL', `the hub gave an invalid URL '${url.slice(0, 200)}'`, {
      cause: error,
    });
  }
  const secure = parsed.protocol === 'wss:';
  if (!secure && (parsed.protocol !== 'ws:' || trust.tls))
    throw new DstreamError(
      'ERR_PROTOCOL',
      `refusing to follow a non-TLS URL (${parsed.protocol}//${parsed.host}) from a TLS hub`,
    );
  // Object.assign, not a spread followed by fields (slow in this V8: stream-endpoint.ts).
  const target: HubTarget = Object.assign({}, trust, {
    tls: secure,
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port ? Number(parsed.port) : secure ? 443 : 80,
  });
  const pool = options.pool?.serves(target) ? options.pool : undefined;
  if (!pool) return upgrade(url, target, options, await connectToHub(target, options.timeoutMs));
  const { socket, spare } = await pool.takeConnection(options.timeoutMs, target);
  try {
    return await upgrade(url, target, options, socket);
  } catch (error) {
    // A spare the hub closed while it waited fails before any HTTP answer: open a new one.
    if (!spare || error instanceof UpgradeRefusedError) throw error;
    return upgrade(url, target, options, await connectToHub(target, options.timeoutMs));
  }
}

/**
 * The TLS socket under each WebSocket `openWebSocket` made on TLS, whose frames carry an
 * all-zero mask: its owner may write whole frames of its own to it (mux/direct-frame.ts).
 */
const zeroMaskedSockets = new WeakMap<WebSocket, Socket>();

/**
 * The socket under `ws` when `openWebSocket` opened it on TLS (client frames then carry an
 * all-zero mask, so a frame written straight to the socket needs no masking); else undefined.
 */
export function zeroMaskedSocketOf(ws: WebSocket): Socket | undefined {
  return zeroMaskedSockets.get(ws);
}

function upgrade(
  url: string,
  target: HubTarget,
  options: OpenWebSocketOptions,
  socket: Socket,
): Promise<WebSocket> {
  const secure = target.tls;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [...options.protocols], {
      createConnection: () => socket,
      headers: options.headers,
      perMessageDeflate: false,
      handshakeTimeout: options.timeoutMs ?? 15_000,
      maxPayload: options.maxPayload ?? 4 * 1024 * 1024,
      // RFC 6455 masks client frames so that attacker-chosen bytes cannot look like HTTP to a
      // cleartext proxy on the path. Inside TLS no proxy sees the frames, so an all-zero mask
      // is sent there, which lets ws skip copying and XOR-ing every byte (a fifth of the CPU
      // of a bulk transfer). Without TLS the masks stay random.
      ...(secure ? { generateMask: (mask: Buffer) => void mask.fill(0) } : {}),
    });
    if (secure) zeroMaskedSockets.set(ws, socket);
    const onError = (error: Error): void => {
      socket.destroy();
      reject(connectError(target, error));
    };
    ws.on('error', onError);
    const { onUpgrade } = options;
    if (onUpgrade) ws.once('upgrade', (res) => onUpgrade(res.headers));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
      res.on('end', () => {
        ws.off('error', onError);
        ws.on('error', () => undefined);
        socket.destroy();
        reject(
          new UpgradeRefusedError(
            res.statusCode ?? 0,
            Buffer.concat(chunks).toString('utf8').slice(0, 1000),
          ),
        );
      });
      res.on('error', () => undefined);
    });
    ws.once('open', () => {
      // Frames that came with the handshake response (the hub relays a waiting peer's bytes
      // the moment it pairs) are emitted on the next tick, before any promise continuation
      // could attach a listener. Pause now; the owner resumes once it listens.
      ws.pause();
      ws.off('error', onError);
      // ws always follows an 'error' with 'close', which owners handle; this keeps an error
      // from crashing the process in the moment before the owner adds its own listener.
      ws.on('error', () => undefined);
      resolve(ws);
    });
  });
}
