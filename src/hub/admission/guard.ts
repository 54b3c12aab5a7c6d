import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { SampledLog } from '../../log/sampled-log.js';
import type { Logger } from '../../log/logger.js';
import {
  authenticateDevice,
  authenticateService,
  defaultMaxTokenLifetimeSeconds,
  type AuthResult,
} from './authenticate.js';
import type { DeviceRecord, PolicyRecord, Registry, Right } from '../store/registry.js';
import { sendError } from '../base/http-util.js';

/** Which credential failed: a device key, a service policy, or a stream token. */
export type AuthFailureKind = 'device' | 'service' | 'stream';

export interface GuardOptions {
  /** Longest token validity accepted, seconds from now. */
  readonly maxTokenLifetimeSeconds: number;
  /** Failed authentications per IP per minute before the IP gets 429 for the rest of the minute. */
  readonly authFailuresPerMinute: number;
  /** Connections per IP that have not (yet) authenticated anything; more are dropped at once. */
  readonly unauthenticatedPerIp: number;
}

export const defaultGuardOptions: GuardOptions = {
  maxTokenLifetimeSeconds: defaultMaxTokenLifetimeSeconds,
  authFailuresPerMinute: 30,
  unauthenticatedPerIp: 256,
};

/** A refusal because of the per-IP failure limit. */
export interface Throttled {
  readonly ok: false;
  readonly status: 429;
  readonly errorCode: 'ThrottlingException';
  readonly message: string;
  readonly retryAfterSeconds: number;
}

const windowMs = 60_000;
/** Bound on tracked IPs, so a spray of source addresses cannot grow memory without end. */
const maxTrackedIps = 100_000;

/** A connection's key: the TLS socket a request arrives on is not the TCP socket admitted. */
const keyOf = (socket: Socket): string =>
  `${socket.remoteAddress ?? '?'}|${socket.remotePort ?? 0}`;

/**
 * The hub's front door: every credential check goes through here, so that failures are counted
 * per remote address (429 with Retry-After past the limit), token lifetimes are bounded, and
 * connections that never authenticate cannot pile up from one address.
 */
export class Guard {
  readonly #failures = new Map<string, { start: number; count: number }>();
  readonly #unauthenticated = new Map<string, number>();
  /** Connections admitted and not yet authenticated, by keyOf(). */
  readonly #pending = new Set<string>();
  /**
   * For refusals an outsider can repeat at will (here, in the hub and in MQTT sessions): one
   * line per kind and address per 10 s, then a count.
   */
  readonly noisy: SampledLog;

  constructor(
    private readonly registry: Registry,
    private readonly logger: Logger,
    readonly options: GuardOptions,
    /** Told of every failed authentication (metrics). */
    private readonly onFailure: (kind: AuthFailureKind) => void = () => undefined,
  ) {
    this.noisy = new SampledLog(logger);
  }

  /** Count a new connection; false means drop it (too many unauthenticated from this IP). */
  admit(socket: Socket): boolean {
    const ip = socket.remoteAddress ?? '?';
    const n = (this.#unauthenticated.get(ip) ?? 0) + 1;
    if (n > this.options.unauthenticatedPerIp) {
      this.noisy.write(
        'warn',
        'unauthenticated-cap',
        ip,
        'connection dropped: too many unauthenticated connections from this address',
        { remote: ip, limit: this.options.unauthenticatedPerIp },
      );
      return false;
    }
    this.#unauthenticated.set(ip, n);
    const key = keyOf(socket);
    this.#pending.add(key);
    socket.once('close', () => {
      if (this.#pending.delete(key)) this.#release(ip);
    });
    return true;
  }

  #release(ip: string): void {
    const n = (this.#unauthenticated.get(ip) ?? 1) - 1;
    if (n > 0) this.#unauthenticated.set(ip, n);
    else this.#unauthenticated.delete(ip);
  }

  /** A request on this connection proved a credential: it no longer counts as unauthenticated. */
  markAuthenticated(socket: Socket): void {
    if (this.#pending.delete(keyOf(socket))) this.#release(socket.remoteAddress ?? '?');
  }

  /** Unauthenticated connections now held from `ip` (tests, metrics). */
  unauthenticatedFrom(ip: string): number {
    return this.#unauthenticated.get(ip) ?? 0;
  }

  /** If this address has failed too often this minute, the 429 to answer with. */
  throttled(ip: string | undefined, now = Date.now()): Throttled | undefined {
    const entry = this.#failures.get(ip ?? '?');
    if (!entry || now - entry.start >= windowMs || entry.count < this.options.authFailuresPerMinute)
      return undefined;
    const retryAfterSeconds = Math.max(1, Math.ceil((entry.start + windowMs - now) / 1000));
    return {
      ok: false,
      status: 429,
      errorCode: 'ThrottlingException',
      message: `too many failed authentications from this address; retry in ${retryAfterSeconds} s`,
      retryAfterSeconds,
    };
  }

  /** Count one failed authentication from `ip`. */
  recordFailure(ip: string | undefined, kind: AuthFailureKind, now = Date.now()): void {
    this.onFailure(kind);
    const key = ip ?? '?';
    const entry = this.#failures.get(key);
    if (!entry || now - entry.start >= windowMs) {
      if (this.#failures.size >= maxTrackedIps) this.#sweep(now);
      this.#failures.set(key, { start: now, count: 1 });
    } else entry.count++;
  }

  #sweep(now: number): void {
    for (const [ip, entry] of this.#failures)
      if (now - entry.start >= windowMs) this.#failures.delete(ip);
    if (this.#failures.size >= maxTrackedIps) this.#failures.clear();
  }

  /** A token check, throttled and counted against the connection's address. */
  #token<T>(
    socket: Socket,
    kind: AuthFailureKind,
    check: (now: number, maxLifetimeSeconds: number) => AuthResult<T>,
  ): AuthResult<T> | Throttled {
    const throttled = this.throttled(socket.remoteAddress);
    if (throttled) return throttled;
    return this.#settle(
      socket,
      kind,
      check(Date.now() / 1000, this.options.maxTokenLifetimeSeconds),
    );
  }

  #settle<T>(socket: Socket, kind: AuthFailureKind, result: AuthResult<T>): AuthResult<T> {
    if (result.ok) this.markAuthenticated(socket);
    else if (result.status === 401) this.recordFailure(socket.remoteAddress, kind);
    return result;
  }

  /** Authenticate a service request for `right`. */
  service(req: IncomingMessage, right: Right): AuthResult<PolicyRecord> | Throttled {
    return this.serviceToken(req.socket, req.headers.authorization, right);
  }

  /**
   * Authenticate a service by its SAS token however it came (an Authorization header, a
   * substream's `open` on a carrier connection), counted against the connection's address.
   */
  serviceToken(
    socket: Socket,
    token: string | undefined,
    right: Right,
  ): AuthResult<PolicyRecord> | Throttled {
    return this.#token(socket, 'service', (now, maxLifetime) =>
      authenticateService(this.registry, token, right, now, maxLifetime),
    );
  }

  /**
   * Authenticate a REST request for `right`; on failure answer it (Retry-After on 429), log it
   * as `<what> request refused`, and return undefined.
   */
  serviceOrRefuse(
    req: IncomingMessage,
    res: ServerResponse,
    right: Right,
    what: string,
  ): PolicyRecord | undefined {
    const auth = this.service(req, right);
    if (auth.ok) return auth.value;
    if (auth.status === 429) res.setHeader('retry-after', String(auth.retryAfterSeconds));
    this.noisy.write(
      'warn',
      `refused ${what} ${auth.status}`,
      req.socket.remoteAddress,
      `${what} request refused`,
      {
        method: req.method,
        remote: req.socket.remoteAddress,
        status: auth.status,
        reason: auth.message,
      },
    );
    sendError(res, auth.status, auth.errorCode, auth.message);
    return undefined;
  }

  /** Authenticate a device's control connection. */
  device(req: IncomingMessage, deviceId: string): AuthResult<DeviceRecord> | Throttled {
    return this.deviceToken(req.socket, req.headers.authorization, deviceId);
  }

  /**
   * Authenticate a device by its SAS token however it came (an Authorization header, an MQTT
   * CONNECT password), counted against the connection's address like every other credential.
   */
  deviceToken(
    socket: Socket,
    token: string | undefined,
    deviceId: string,
  ): AuthResult<DeviceRecord> | Throttled {
    return this.#token(socket, 'device', (now, maxLifetime) =>
      authenticateDevice(this.registry, token, deviceId, now, maxLifetime),
    );
  }
}
