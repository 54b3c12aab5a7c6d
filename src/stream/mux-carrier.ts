import { describeError, DstreamError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { MuxSession } from '../mux/mux-session.js';
import { answerOf, type MuxStream } from '../mux/mux-stream.js';
import { defaultHeartbeatMs, Heartbeat } from '../net/heartbeat.js';
import {
  openWebSocket,
  zeroMaskedSocketOf,
  UpgradeRefusedError,
  type HubConnectionPool,
  type HubTrust,
} from '../net/hub-client.js';
import { resumableStreamProtocol } from '../protocol/constants.js';
import { parseIotHubError } from '../protocol/iothub-error.js';
import { muxOffersHeader, muxProtocol, type MuxOpenRequest } from '../protocol/mux-frames.js';
import type {
  Carrier,
  InitiateOptions,
  OpenOptions,
  StreamGrant,
  StreamRequest,
  StreamSocket,
} from './carrier.js';
import { ResumeRefusedError } from './resumable-bridge.js';
import { endProtocols, type WebSocketCarrier } from './websocket-carrier.js';
import { abortError } from '../runtime/hangup.js';

export interface MuxCarrierOptions {
  /** How the hub is verified. */
  readonly trust: HubTrust;
  /** Verified connections made in advance (the carrier connection's first one comes from it). */
  readonly pool?: HubConnectionPool | undefined;
  /**
   * Where on the hub carrier connections go (`/mux` for the service side,
   * `/devices/{id}/mux` for a device), and the `Authorization` value they are opened with (a
   * fresh service or device token).
   */
  readonly path: string;
  readonly authorization: () => string;
  /**
   * What carries a stream the hub will not take on a carrier connection: a hub without the
   * multiplexed carrier (an older dstream), a stream it answers 421 for (in a cluster: another
   * node's stream, a resumption the cluster must place).
   */
  readonly fallback: WebSocketCarrier;
  /** Ping interval of carrier connections (ms); two missed pings drop one. */
  readonly heartbeatMs?: number | undefined;
  readonly logger: Logger;
  /**
   * A device's carrier: its connections take stream offers (they say so in their upgrade), and
   * each substream the hub opens on them comes here, paused, to be answered with `accept` or
   * `refuse`: the device's answer to a stream request.
   */
  readonly onOffer?: ((stream: MuxStream, request: MuxOpenRequest) => void) | undefined;
}

/**
 * The multiplexed carrier: every stream socket is a substream of one carrier connection per
 * hub address (`dstream.mux.v1` at `/mux`, docs/protocol.md), opened once and kept, so a
 * stream costs one frame each way instead of a TLS connection and an upgrade. A carrier
 * connection that is lost closes its substreams as lost: resumable streams resume, on a new
 * one. Streams the hub will not carry this way go by the WebSocket carrier (`fallback`).
 */
export class MuxCarrier implements Carrier {
  readonly kind = 'mux';
  readonly #sessions = new Map<string, Promise<MuxSession>>();
  /** Hub addresses that answered that they have no carrier connections: per-stream sockets. */
  readonly #perStream = new Set<string>();
  /** Hub addresses that take no initiations on a carrier connection (older, or a cluster). */
  readonly #askByPost = new Set<string>();
  readonly #heartbeat: Heartbeat;
  /**
   * A device's carrier: the hub address whose node offers its streams now, the one its
   * control connection names. A carrier connection to any other address carries only the
   * streams already on it (and resumptions toward that node), then closes.
   */
  #offersAt: string | undefined;
  /** A device's carrier connections finishing their streams at a node offers left, by address. */
  readonly #retiring = new Map<string, MuxSession>();
  #closed = false;

  constructor(private readonly options: MuxCarrierOptions) {
    this.#heartbeat = new Heartbeat(options.heartbeatMs ?? defaultHeartbeatMs, 2, () =>
      options.logger.warn('carrier connection silent (missed two pings); dropping it'),
    );
  }

  async open(grant: StreamGrant, options: OpenOptions): Promise<StreamSocket> {
    const origin = originOf(grant.url);
    if (this.#perStream.has(origin)) return this.options.fallback.open(grant, options);
    const session = await this.#sessionFor(origin);
    if (!session) return this.options.fallback.open(grant, options);
    const stream = session.open(grant.url, {
      path: pathOf(grant.url),
      authorization: `Bearer ${grant.token}`,
      protocols: [...endProtocols(options.resume)],
    });
    this.#retireIfElsewhere(origin, session);
    const refused = await answerOf(stream);
    if (!refused) return stream;
    if (refused.status === 421) return this.options.fallback.open(grant, options);
    if (refused.status === 0)
      throw new DstreamError('ERR_HUB_UNREACHABLE', 'the carrier connection to the hub was lost', {
        hint: 'Check that the hub is running and reachable, then try again.',
      });
    throw new DstreamError(
      'ERR_HUB_RESPONSE',
      `the streaming endpoint refused the stream (${refused.status}: ${
        parseIotHubError(refused.body).message ?? 'no reason given'
      })`,
    );
  }

  /**
   * Ask for a stream and open it in one frame: a substream `open` of IoT Hub's initiation path
   * with the service token, answered with `accept` once the device accepted (the opener may
   * send meanwhile, within its window) or with `refuse` carrying the POST's answer. A hub
   * that takes no initiations this way (404 NotFound: older; 421: a cluster) is asked with the
   * POST from then on.
   */
  async initiate(request: StreamRequest, options: InitiateOptions): Promise<StreamSocket> {
    const byPost = async (): Promise<StreamSocket> =>
      this.open(await request.grant(options.signal), options);
    const origin = request.hub;
    if (this.#askByPost.has(origin) || this.#perStream.has(origin)) return byPost();
    const session = await this.#sessionFor(origin);
    if (!session) return byPost();
    if (options.signal.aborted) throw abortError();
    const path = `/twins/${encodeURIComponent(request.deviceId)}/streams/${encodeURIComponent(request.streamName)}`;
    const stream = session.open(`${origin}${path}`, {
      path,
      authorization: this.options.authorization(),
      protocols: [...endProtocols(options.resume)],
      ...(Object.keys(request.headers).length > 0 && { headers: request.headers }),
    });
    // The local side left while the device was asked: the hub drops the stream.
    const leave = (): void => stream.terminate();
    options.signal.addEventListener('abort', leave);
    const refused = await answerOf(stream);
    options.signal.removeEventListener('abort', leave);
    if (options.signal.aborted) throw abortError();
    if (!refused) return stream;
    if (
      refused.status === 421 ||
      (refused.status === 404 && parseIotHubError(refused.body).name === 'NotFound')
    ) {
      this.#askByPost.add(origin);
      return byPost();
    }
    if (refused.status === 0)
      throw new DstreamError('ERR_HUB_UNREACHABLE', 'the carrier connection to the hub was lost', {
        hint: 'Check that the hub is running and reachable, then try again.',
      });
    throw request.refusal(refused.status, refused.body);
  }

  async resume(url: string, ticket: string): Promise<StreamSocket> {
    const origin = originOf(url);
    let session: MuxSession | undefined;
    try {
      session = this.#perStream.has(origin) ? undefined : await this.#sessionFor(origin);
    } catch {
      // This address is unreachable (its node may be gone): the WebSocket carrier tries the
      // hub's own address next.
      session = undefined;
    }
    if (!session) return this.options.fallback.resume(url, ticket);
    const stream = session.open(url, {
      path: pathOf(url),
      authorization: `Resume ${ticket}`,
      protocols: [resumableStreamProtocol],
    });
    this.#retireIfElsewhere(origin, session);
    const refused = await answerOf(stream);
    if (!refused) return stream;
    if (refused.status === 421) return this.options.fallback.resume(url, ticket);
    // Refused (not unreachable): the hub will not take this ticket again.
    if (refused.status >= 400 && refused.status < 500 && refused.status !== 429)
      throw new ResumeRefusedError(
        parseIotHubError(refused.body).message ?? `answered ${refused.status}`,
      );
    throw new Error(`the hub could not resume the stream now (${refused.status})`);
  }

  /**
   * Have a carrier connection to `origin` open now rather than with the first stream (a device
   * that takes stream offers opens it beside its control connection, on every connect); a
   * failure is logged and left for the next stream to retry. For a device's carrier, `origin`
   * is where its stream offers come from now: a carrier connection to another node (the
   * control connection moved, say when the balancer in front of a cluster restarted while
   * the node stayed up) would otherwise stay open, idle and heartbeating, for as long as the
   * agent runs. It finishes the streams it carries, then closes.
   */
  standby(origin: string): void {
    if (this.#closed) return;
    if (this.options.onOffer && this.#offersAt !== origin) {
      this.#offersAt = origin;
      // Retiring deletes a turn later (once the connection is there): iterating is safe.
      for (const elsewhere of this.#sessions.keys()) this.#retireIfElsewhere(elsewhere);
      this.#reinstate(origin);
    }
    if (this.#perStream.has(origin)) return;
    this.#sessionFor(origin).catch((error: unknown) =>
      this.options.logger.debug('cannot open the carrier connection now', {
        hub: origin,
        reason: describeError(error),
      }),
    );
  }

  /**
   * A device's carrier connection to a node that no longer offers its streams (opened before
   * the control connection moved, or since, to resume a stream held there): no new streams go
   * on it; it closes once those on it have ended. Called after a stream was opened on `on`
   * (so that the stream counts), or with none for whatever connection that address has.
   */
  #retireIfElsewhere(origin: string, on?: MuxSession): void {
    if (!this.options.onOffer || this.#offersAt === undefined || origin === this.#offersAt) return;
    const pending = this.#sessions.get(origin);
    pending?.then(
      (session) => {
        // A newer connection to that address (this one was lost meanwhile) is not this
        // stream's: the stream that opens on it retires it.
        if (on !== undefined && session !== on) return;
        // Offers came back to that address while the connection was still being made.
        if (this.#offersAt === origin) return;
        if (this.#sessions.get(origin) === pending) this.#sessions.delete(origin);
        session.closeWhenIdle(1000, 'stream offers come from another hub node now');
        if (!session.closed) this.#retiring.set(origin, session);
      },
      () => undefined,
    );
  }

  /**
   * Offers come from `origin` again while the connection there still finishes its streams:
   * that connection takes new streams again, rather than a second one being opened. The hub
   * offers a device's streams on its newest carrier connection at the node, which until a
   * second one arrived would have been this one, refusing them (403) as it was closing.
   */
  #reinstate(origin: string): void {
    const session = this.#retiring.get(origin);
    if (!session) return;
    this.#retiring.delete(origin);
    if (this.#sessions.has(origin) || !session.keepOpen()) return;
    this.#sessions.set(origin, Promise.resolve(session));
  }

  /** The carrier connection to `origin`, opened if there is none; undefined: per-stream. */
  async #sessionFor(origin: string, again = true): Promise<MuxSession | undefined> {
    if (this.#closed) throw new DstreamError('ERR_INTERRUPTED', 'the carrier is closed');
    let pending = this.#sessions.get(origin);
    if (!pending) {
      pending = this.#connect(origin);
      this.#sessions.set(origin, pending);
      // A failed attempt is not kept: the next stream tries again.
      pending.catch(() => {
        if (this.#sessions.get(origin) === pending) this.#sessions.delete(origin);
      });
    }
    try {
      const session = await pending;
      if (!session.closed) return session;
      // Lost just now (its 'close' forgets it a turn later): the next stream opens a new one.
      if (this.#sessions.get(origin) === pending) this.#sessions.delete(origin);
      if (again) return await this.#sessionFor(origin, false);
      throw new DstreamError('ERR_HUB_UNREACHABLE', 'the hub closed the carrier connection', {
        hint: 'Check the hub log; --transport ws opens one connection per stream instead.',
      });
    } catch (error) {
      if (error instanceof UpgradeRefusedError && (error.status === 404 || error.status === 400)) {
        this.options.logger.info(
          'the hub has no carrier connections (an older dstream?): one connection per stream',
          { hub: origin },
        );
        this.#perStream.add(origin);
        return undefined;
      }
      if (error instanceof UpgradeRefusedError)
        throw new DstreamError(
          error.status === 401 ? 'ERR_UNAUTHORIZED' : 'ERR_HUB_RESPONSE',
          `the hub refused the carrier connection (${error.status}: ${
            parseIotHubError(error.body).message ?? 'no reason given'
          })`,
          { cause: error },
        );
      throw error;
    }
  }

  async #connect(origin: string): Promise<MuxSession> {
    const { onOffer } = this.options;
    const ws = await openWebSocket(`${origin}${this.options.path}`, this.options.trust, {
      headers: {
        authorization: this.options.authorization(),
        ...(onOffer && { [muxOffersHeader]: '1' }),
      },
      protocols: [muxProtocol],
      pool: this.options.pool,
    });
    // openWebSocket hands sockets over paused; the session reads from now on.
    ws.resume();
    const socket = zeroMaskedSocketOf(ws);
    const session = new MuxSession(ws, {
      role: 'dialler',
      direct: socket && { socket, masked: true },
    });
    this.#heartbeat.add(ws);
    if (onOffer)
      session.on('open-request', (stream, request) => {
        // The hub names a path; resumptions of this stream open it on the same hub.
        stream.url = `${origin}${request.path}`;
        onOffer(stream, request);
      });
    session.on('close', (code, reason) => {
      this.options.logger.debug('carrier connection closed', { hub: origin, code, reason });
      if (this.#retiring.get(origin) === session) this.#retiring.delete(origin);
      const current = this.#sessions.get(origin);
      void current?.then((s) => {
        if (s === session && this.#sessions.get(origin) === current) this.#sessions.delete(origin);
      });
    });
    session.on('protocol-error', (message) =>
      this.options.logger.warn('the hub broke the carrier framing', { hub: origin, message }),
    );
    if (this.#closed) session.close(1000, 'carrier closed');
    return session;
  }

  close(): void {
    this.#closed = true;
    this.#heartbeat.stop();
    for (const pending of this.#sessions.values())
      pending.then(
        (session) => session.close(1000, 'carrier closed'),
        () => undefined,
      );
    this.#sessions.clear();
    for (const session of this.#retiring.values()) session.close(1000, 'carrier closed');
    this.#retiring.clear();
    this.options.fallback.close();
  }
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch (error) {
    throw new DstreamError('ERR_PROTOCOL', `the hub gave an invalid URL '${url.slice(0, 200)}'`, {
      cause: error,
    });
  }
}

function pathOf(url: string): string {
  return new URL(url).pathname;
}
