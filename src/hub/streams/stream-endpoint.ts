import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData } from 'ws';
import type { StreamSocket } from '../../net/stream-socket.js';
import type { LogFields, Logger } from '../../log/logger.js';
import type { Heartbeat } from '../../net/heartbeat.js';
import type { Guard } from '../admission/guard.js';
import {
  closeCodes,
  resumableStreamProtocol,
  streamProtocol,
  streamTokenTtlMs,
} from '../../protocol/constants.js';
import { formatStreamFrame } from '../../protocol/stream-frames.js';
import type { ResumeClaims, StreamSide } from '../../protocol/resume-ticket.js';
import { BoundedMemory } from '../base/bounded-memory.js';
import { ResumeDesk, resumeMemoryBound, type ResumeAdmitted } from './resume-desk.js';
import { StreamTable } from './stream-table.js';
import { negotiate } from './negotiation.js';
import { mintStreamTokens, sideOfToken } from './stream-tokens.js';
import { relay, type EarlyMessage, type RelayEvents } from './relay.js';
import { StringPool } from '../base/string-pool.js';
import { closeWebSocket } from '../../net/close.js';
import { arrivalMayBe, upgradeArrival, type StreamArrival } from './stream-arrival.js';
import { randomText } from './random-text.js';

export type { StreamSide } from '../../protocol/resume-ticket.js';

/** Who asked for a stream, for the audit log. */
export interface StreamOrigin {
  readonly policy: string | undefined;
  readonly remote: string | undefined;
}

/**
 * In a cluster, where a resuming half whose ticket the desk admitted goes: 'here', or
 * 'elsewhere' once the cluster has forwarded it to the node where its halves meet (or
 * refused it for now).
 */
export type ResumeMeeting = (claims: ResumeClaims) => Promise<'here' | 'elsewhere'>;

/** What every stream record has, fresh or resuming. */
interface RecordBase {
  readonly id: string;
  readonly origin: StreamOrigin;
  readonly deviceId: string;
  readonly name: string;
  readonly createdAt: number;
  readonly sockets: Partial<Record<StreamSide, StreamSocket>>;
  /**
   * Listeners that end the stream if a side leaves before pairing; dropped once paired. This
   * and `early` are made when a side arrives and dropped at the pairing: two Maps for the
   * life of every stream were about 500 bytes of the hub's 6.8 KiB per open stream.
   */
  earlyClose: Map<StreamSocket, () => void> | undefined;
  /**
   * Messages a side sent before its partner arrived. pause() stops reading from the socket,
   * but frames already read are still emitted, so they are kept here (bounded by one read).
   */
  early:
    | Map<
        StreamSocket,
        { readonly messages: EarlyMessage[]; readonly listener: (d: RawData, b: boolean) => void }
      >
    | undefined;
  timer: NodeJS.Timeout | undefined;
  paired: boolean;
  /** Paired as a resumable stream (both ends speak dstream.stream.v2). */
  resumable: boolean;
  /** Bytes relayed so far, service->device (a) and device->service (b); live while paired. */
  readonly counts: { a: number; b: number };
  /**
   * Why the hub itself ended it for good (an operator; its device disabled or removed): its
   * end is then an end, not a suspension, whatever code its sockets closed with.
   */
  endedBecause: string | undefined;
  /** Set when its halves pair: what the relay's events need (one object, not closures). */
  pairing: Pairing | undefined;
}

/** One pairing of a stream's halves, as its relay's events see it. */
interface Pairing {
  readonly at: number;
  /** Stream offsets where this pairing started, from each end's `resume` (what it holds). */
  readonly start: { a?: number; b?: number };
  /** How far the hub relayed each direction before the suspension this pairing resumes. */
  readonly before: { readonly service: number; readonly device: number } | undefined;
  forgeryLogged: boolean;
}

/** A new stream: its halves come with the single-use tokens the hub minted for it. */
interface FreshRecord extends RecordBase {
  readonly kind: 'fresh';
  readonly tokens: Readonly<Record<StreamSide, string>>;
  /** Each token is good for one connection. */
  readonly used: Record<StreamSide, boolean>;
  /** The side whose end got its first ticket ahead of the pairing (with a stream offer). */
  ticketed?: StreamSide | undefined;
}

/** The meeting point of a suspended stream's halves, which come back with tickets. */
interface ResumingRecord extends RecordBase {
  readonly kind: 'resuming';
  /** The generation of the tickets its halves presented. */
  readonly generation: number;
  /**
   * The tickets its halves presented (ResumeDesk keys). They are spent when the halves pair,
   * not before: an end whose attempt the hub took but whose answer it never saw (a handshake
   * timed out under load) comes back with the same ticket, and the newer wins.
   */
  readonly presented: Map<StreamSide, string>;
}

type StreamRecord = FreshRecord | ResumingRecord;

/** How a stream that is ended by the hub is reported ('stream-end'). */
type EndKind =
  /** An end: the stream is over. */
  | 'ended'
  /** Cancelled during set-up (rejected, timed out, caller gone): already audited there. */
  | 'cancelled'
  /** A resumable stream whose halves are coming back: not an end. */
  | 'suspended'
  /** A suspended stream whose other half did not come back in time. */
  | 'gave-up';

export interface CreatedStream {
  readonly id: string;
  readonly deviceToken: string;
  readonly serviceToken: string;
}

export interface StreamEndpointOptions {
  /** How long tokens are valid and a stream waits for its second side (default 60 s). */
  readonly pairTimeoutMs?: number | undefined;
  /** Largest frame a stream socket may send. */
  readonly maxFrameBytes?: number | undefined;
  /** How long a raw peer's quiet after the other side's half-close ends a stream (relay.ts). */
  readonly rawEofLingerMs?: number | undefined;
  /** Pings stream sockets: keeps idle streams alive through NATs, finds dead peers. */
  readonly heartbeat?: Heartbeat;
  /** Counts failed stream tokens per address and marks good ones authenticated. */
  readonly guard?: Guard;
  /**
   * Put in front of every stream id ("<prefix>.<random>"): in a cluster, the node's id, so a
   * stream socket that reaches another node can be sent on to the one that holds the stream.
   */
  readonly idPrefix?: string | undefined;
  /**
   * Resumable streams (dstream.stream.v2): the key resume tickets are signed with (the data
   * dir's), how long a suspended stream waits for its halves, and whether a device may still
   * have its streams (disabled or removed devices do not get them back).
   */
  readonly resume?:
    | {
        readonly key: Buffer;
        readonly windowMs: number;
        readonly deviceAllowed: (deviceId: string) => boolean;
      }
    | undefined;
}

/** The public view of a record. */
function openStreamOf(record: StreamRecord): OpenStream {
  return {
    id: record.id,
    deviceId: record.deviceId,
    name: record.name,
    policy: record.origin.policy,
    remote: record.origin.remote,
    state: record.paired ? 'open' : record.kind === 'resuming' ? 'resuming' : 'pairing',
    resumable: record.resumable || record.kind === 'resuming',
    resumptions: record.kind === 'resuming' ? record.generation : 0,
    since: record.createdAt,
    bytesToDevice: record.counts.a,
    bytesFromDevice: record.counts.b,
  };
}

/**
 * A stream socket's error listener: made outside the pairing's closures, which it would
 * otherwise keep (with what arrived early) for the stream's life.
 */
function socketErrorLogger(logger: Logger, id: string, side: StreamSide): (error: Error) => void {
  return (error) => logger.debug('stream socket error', { id, side, error: error.message });
}

/**
 * The fields of a record in its first state: nobody connected, nothing relayed. Written out,
 * not spread from `fields`: a spread followed by properties takes about a microsecond per
 * property in this V8 (Node 20), 12-15 µs a stream here; the kinds' own fields are added with
 * Object.assign, which is as fast as a literal.
 */
function emptyRecord(fields: Pick<RecordBase, 'id' | 'origin' | 'deviceId' | 'name'>): RecordBase {
  return {
    id: fields.id,
    origin: fields.origin,
    deviceId: fields.deviceId,
    name: fields.name,
    createdAt: Date.now(),
    sockets: {},
    earlyClose: undefined,
    early: undefined,
    timer: undefined,
    paired: false,
    resumable: false,
    counts: { a: 0, b: 0 },
    endedBecause: undefined,
    pairing: undefined,
  };
}

/** What the hub knows of a stream when it ends ('stream-end' event). */
export interface StreamEndInfo {
  readonly id: string;
  readonly origin: StreamOrigin;
  /** Cancelled during set-up (rejected, timed out, caller gone): already audited there. */
  readonly cancelled: boolean;
  readonly deviceId: string;
  readonly name: string;
  readonly paired: boolean;
  readonly bytesToDevice: number;
  readonly bytesFromDevice: number;
  readonly durationMs: number;
  readonly reason: string;
  /** A resumable stream whose socket was lost: its ends are resuming it (not an end). */
  readonly suspended: boolean;
  /** A suspended stream whose other half did not come back within the resume window. */
  readonly gaveUp: boolean;
}

/** A suspended stream whose halves met again ('stream-resumed' event). */
export interface StreamResumedInfo {
  readonly id: string;
  readonly deviceId: string;
  readonly name: string;
  /** The generation of the tickets its halves came back with. */
  readonly generation: number;
  /** How long the first half to come back waited for the second. */
  readonly waitedMs: number;
  /** Where the first half to come back came from. */
  readonly remote: string | undefined;
}

/** Bytes a resumed stream's end sends again that this hub had relayed before. */
export interface StreamReplayedInfo {
  readonly id: string;
  readonly deviceId: string;
  readonly name: string;
  readonly bytes: number;
}

/** A stream not yet finished, as the REST API and the console show it (`GET /streams`). */
export interface OpenStream {
  readonly id: string;
  readonly deviceId: string;
  /** The stream name the service asked for (the agent maps it to a target). */
  readonly name: string;
  /** The policy that opened it (unknown for a stream this hub only saw resumed). */
  readonly policy: string | undefined;
  /** The address the service side asked from (or, once resumed, came back from). */
  readonly remote: string | undefined;
  /** Waiting for its halves, relaying, or a suspended stream whose halves are coming back. */
  readonly state: 'pairing' | 'open' | 'resuming';
  readonly resumable: boolean;
  /** Times its halves resumed it (0 for a stream never suspended). */
  readonly resumptions: number;
  /** When this hub made the record (for a resumed stream: when it came back). */
  readonly since: number;
  readonly bytesToDevice: number;
  readonly bytesFromDevice: number;
}

/** The events of a StreamEndpoint. */
export interface StreamEndpointEvents {
  /** A resumed stream's end is sending again bytes this hub had relayed before the loss. */
  'stream-replayed': [StreamReplayedInfo];
  /** Once per stream record: it ended, was cancelled, or was suspended. */
  'stream-end': [StreamEndInfo];
  /** A suspended stream's halves met again. */
  'stream-resumed': [StreamResumedInfo];
  /** A device was disabled or removed; its streams here have been ended for good. */
  'device-closed': [deviceId: string];
}

/**
 * The streaming endpoint: holds streams the devices accepted, takes one WebSocket from each
 * side (authenticated by that side's single-use token, or by a resume ticket that the resume
 * desk admits), pairs them and relays bytes.
 */
export class StreamEndpoint extends EventEmitter<StreamEndpointEvents> {
  readonly #streams = new StreamTable<StreamRecord>();
  /** Device ids, stream and policy names: one copy each for all the streams that name them. */
  readonly #names = new StringPool();
  /** Completes stream sockets' WebSocket upgrades. */
  readonly #wss: WebSocketServer;
  readonly #pairTimeoutMs: number;
  readonly #heartbeat: Heartbeat | undefined;
  readonly #guard: Guard | undefined;
  readonly #idPrefix: string;
  /** Resumable streams: absent when this hub does not offer them. */
  readonly #desk: ResumeDesk | undefined;
  readonly #rawEofLingerMs: number | undefined;
  #created = 0;
  /** Suspended streams none of whose halves has come back yet: their give-up timers. */
  readonly #returning = new BoundedMemory<NodeJS.Timeout>(resumeMemoryBound, clearTimeout);
  /**
   * How far this hub relayed each direction of a suspended stream (stream offsets), so that
   * the resumption's `resume` frames tell how much is sent again. Bounded as the desk's
   * memories; a restarted hub has none and counts no replay for streams it did not relay.
   */
  readonly #relayedUpTo = new BoundedMemory<{ readonly service: number; readonly device: number }>(
    resumeMemoryBound,
  );

  constructor(
    private readonly logger: Logger,
    options: StreamEndpointOptions = {},
  ) {
    super();
    this.#pairTimeoutMs = options.pairTimeoutMs ?? streamTokenTtlMs;
    this.#heartbeat = options.heartbeat;
    this.#guard = options.guard;
    this.#idPrefix = options.idPrefix === undefined ? '' : `${options.idPrefix}.`;
    this.#desk =
      options.resume &&
      new ResumeDesk(Object.assign({}, options.resume, { nodeId: options.idPrefix }));
    this.#rawEofLingerMs = options.rawEofLingerMs;
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: options.maxFrameBytes ?? 4 * 1024 * 1024,
      clientTracking: false,
      handleProtocols: (protocols) => this.chooseProtocol(protocols),
    });
  }

  /**
   * The stream protocol a side gets: ours when offered (resumable first, when this hub can
   * sign tickets); otherwise the first one offered, echoed, so that a strict client (Azure's C
   * device sample offers "MQTT") keeps the socket; raw bytes follow either way.
   */
  chooseProtocol(offered: ReadonlySet<string>): string | false {
    if (this.#desk && offered.has(resumableStreamProtocol)) return resumableStreamProtocol;
    if (offered.has(streamProtocol)) return streamProtocol;
    return [...offered][0] ?? false;
  }

  /** The stream protocols this hub speaks, preferred first: what it offers a device's half it opens. */
  get protocols(): readonly string[] {
    return this.#desk ? [resumableStreamProtocol, streamProtocol] : [streamProtocol];
  }

  /** A refusal an outsider can repeat: sampled per address when the hub has a guard. */
  #noisy(kind: string, remote: string | undefined, message: string, fields: LogFields): void {
    if (this.#guard) this.#guard.noisy.write('warn', kind, remote, message, fields);
    else this.logger.warn(message, fields);
  }

  /** Streams not yet finished (waiting or relaying). */
  get size(): number {
    return this.#streams.size;
  }

  /** Streams this endpoint created since it started (the console's new-streams rate). */
  get createdTotal(): number {
    return this.#created;
  }

  /** The streams not yet finished, as the REST API shows them. O(open streams). */
  list(): OpenStream[] {
    return this.#streams.all().map(openStreamOf);
  }

  /**
   * End a stream on an operator's request. Its sockets close with 4001, the code with which
   * an end resets a stream on purpose, so resumable ends end too instead of resuming it.
   * Returns what the stream was, or undefined if there is no such stream here.
   */
  terminate(id: string, reason: string): OpenStream | undefined {
    const record = this.#streams.get(id);
    if (!record) return undefined;
    const before = openStreamOf(record);
    this.#desk?.finished(id);
    this.#endForGood(record, closeCodes.localError, reason);
    return before;
  }

  /**
   * The hub ends a stream that must not resume (an operator ended it, its device was disabled
   * or removed): a paired one's relay then reports an end, whatever code its sockets close with.
   */
  #endForGood(record: StreamRecord, code: number, reason: string): void {
    record.endedBecause = reason;
    this.#end(record, { code, reason });
  }

  /** Resolves once no stream is left, or after `timeoutMs` (a drain's wait). */
  whenEmpty(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('stream-end', check);
        resolve();
      };
      const check = (): void => {
        if (this.size === 0) done();
      };
      const timer = setTimeout(done, timeoutMs);
      this.on('stream-end', check);
      check();
    });
  }

  /** Bytes relayed by all streams, finished and running, for metrics. O(open streams). */
  bytesRelayed(): { toDevice: number; fromDevice: number } {
    return this.#streams.bytesRelayed();
  }

  /** True if this endpoint holds (or held) a stream by that id: false for another node's. */
  isLocal(id: string): boolean {
    return this.#idPrefix === '' || id.startsWith(this.#idPrefix) || !id.includes('.');
  }

  /** Streams of one device not yet finished. */
  countFor(deviceId: string): number {
    return this.#streams.countFor(deviceId);
  }

  /** Register a stream and mint its two tokens; it is dropped unless paired in time. */
  create(
    deviceId: string,
    name: string,
    origin: StreamOrigin = { policy: undefined, remote: undefined },
  ): CreatedStream {
    const id = this.#idPrefix + randomText(18);
    this.#created++;
    const tokens = mintStreamTokens();
    const names = this.#names;
    const record: FreshRecord = Object.assign(
      emptyRecord({
        id,
        origin:
          origin.policy === undefined
            ? origin
            : { policy: names.intern(origin.policy), remote: origin.remote },
        deviceId: names.intern(deviceId),
        name: names.intern(name),
      }),
      { kind: 'fresh' as const, tokens, used: { device: false, service: false } },
    );
    record.timer = setTimeout(() => this.#expire(record), this.#pairTimeoutMs);
    this.#streams.add(record);
    return { id, deviceToken: tokens.device, serviceToken: tokens.service };
  }

  /** Drop a stream that will not happen (the device rejected it, the service left). */
  cancel(id: string): void {
    const record = this.#streams.get(id);
    if (record && !record.paired)
      this.#end(record, {
        code: closeCodes.shutdown,
        reason: 'stream cancelled',
        kind: 'cancelled',
      });
  }

  #expire(record: StreamRecord): void {
    record.timer = undefined;
    if (record.paired) return;
    this.logger.info('stream dropped: its second side did not arrive in time', {
      device: record.deviceId,
      stream: record.name,
      id: record.id,
    });
    this.#end(record, {
      code: closeCodes.pairTimeout,
      reason: 'the other side did not connect in time',
    });
  }

  /** End a stream from the hub's side: its sockets are closed with `code` and `reason`. */
  #end(
    record: StreamRecord,
    how: { readonly code: number; readonly reason: string; readonly kind?: EndKind },
  ): void {
    if (record.timer) clearTimeout(record.timer);
    record.timer = undefined;
    if (!this.#streams.remove(record)) return;
    // A paired stream reports its end when its relay ends (with the byte counts).
    if (!record.paired)
      this.#emitEnd(record, { toDevice: 0, fromDevice: 0, reason: how.reason, kind: how.kind });
    for (const ws of Object.values(record.sockets)) {
      // An unpaired side is paused: closeWebSocket resumes it so the handshake can complete.
      closeWebSocket(ws, how.code, how.reason);
    }
  }

  /** Close every stream of a device (disabled or removed). */
  closeDevice(deviceId: string): void {
    this.revokeResumption(deviceId);
    const reason = 'device disabled or removed';
    for (const record of this.#streams.all())
      // An end, not a suspension: its ends cannot resume it (the desk refuses them now).
      if (record.deviceId === deviceId) this.#endForGood(record, closeCodes.shutdown, reason);
    this.emit('device-closed', deviceId);
  }

  /**
   * A device was disabled, removed or re-keyed: its suspended streams do not come back, even
   * if it is enabled again within the resume window.
   */
  revokeResumption(deviceId: string): void {
    this.#desk?.revoke(deviceId);
  }

  /** Which side a bearer token belongs to, checked in constant time; undefined if neither. */

  /**
   * Handle an upgrade to /bridges/<id> with `Authorization: Bearer <token>` (a new stream's
   * side), or `Authorization: Resume <ticket>` (a resumable stream's side coming back).
   */
  accept(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    id: string,
    meet?: ResumeMeeting,
  ): void {
    this.admit(upgradeArrival(req, socket, head, this.#wss, this.#guard), id, meet);
  }

  /**
   * Take one side of stream `id`, however it arrived (a WebSocket upgrade, a substream of a
   * carrier connection): a new stream's side with its token, or a resumable stream's side
   * coming back with its ticket (`meet` places it in a cluster).
   */
  admit(arrival: StreamArrival, id: string, meet?: ResumeMeeting): void {
    const header = arrival.authorization;
    const remote = arrival.remote;
    const throttled = this.#guard?.throttled(remote);
    if (throttled) {
      arrival.refuse(429, throttled.errorCode, throttled.message, {
        'Retry-After': String(throttled.retryAfterSeconds),
      });
      return;
    }
    if (header.startsWith('Resume ')) return this.#acceptResume(arrival, id, header.slice(7), meet);
    const found = this.#streams.get(id);
    // A resuming record has no tokens: its halves come back with tickets only.
    const record = found?.kind === 'fresh' ? found : undefined;
    const token = header.startsWith('Bearer ') ? header.slice(7) : '';
    const tokenSide = record && token ? sideOfToken(record.tokens, token) : undefined;
    // A carrier connection authenticated for one side opens only that side's halves.
    const side =
      record && tokenSide && arrivalMayBe(arrival, tokenSide, record.deviceId)
        ? tokenSide
        : undefined;
    if (!record || !side || Date.now() - record.createdAt > this.#pairTimeoutMs) {
      this.#guard?.recordFailure(remote, 'stream');
      this.#noisy(
        'stream-token',
        remote,
        'stream connection refused: unknown stream or invalid token',
        {
          remote,
        },
      );
      arrival.refuse(401, 'IotHubUnauthorizedAccess', 'invalid or expired stream token');
      return;
    }
    if (record.used[side]) {
      this.#guard?.recordFailure(remote, 'stream');
      this.#noisy('stream-token-used', remote, 'stream connection refused: token already used', {
        device: record.deviceId,
        side,
        remote,
      });
      arrival.refuse(401, 'IotHubUnauthorizedAccess', 'stream token already used');
      return;
    }
    record.used[side] = true;
    if (arrival.ticketed) record.ticketed = side;
    arrival.authenticated();
    this.#attach(record, side, arrival);
  }

  /**
   * A resumable stream's side reconnecting with its ticket. The ticket, not this process's
   * memory, says which stream, device and side it is, so a restarted hub takes it too. Its
   * halves meet in a record made by whichever comes first, and are paired as a new stream's.
   */
  #acceptResume(
    arrival: StreamArrival,
    id: string,
    ticket: string,
    meet: ResumeMeeting | undefined,
  ): void {
    const remote = arrival.remote;
    // 401 only for a ticket that does not verify (a guess, counted against the address);
    // a genuine ticket that can no longer be used is 404 StreamNotFound, not counted: the end
    // stops trying (as on any refusal, resumable-bridge.ts).
    const desk = this.#desk;
    const verdict = desk
      ? desk.admit(id, ticket, arrival.offered)
      : ({
          ok: false,
          status: 401,
          errorCode: 'IotHubUnauthorizedAccess',
          message: 'this hub does not resume streams',
        } as const);
    if (!verdict.ok) {
      if (verdict.status === 401) this.#guard?.recordFailure(remote, 'stream');
      this.#noisy('stream-resume', remote, 'stream resumption refused', {
        id,
        remote,
        reason: verdict.message,
      });
      return arrival.refuse(verdict.status, verdict.errorCode, verdict.message);
    }
    if (!meet) return this.#admitResume(arrival, verdict);
    meet(verdict.claims).then(
      (place) => {
        if (place === 'here') this.#admitResume(arrival, verdict);
      },
      (error: unknown) => {
        this.logger.warn('cannot place a resuming stream socket', {
          id,
          error: error instanceof Error ? error.message : String(error),
        });
        arrival.refuse(503, 'ServiceUnavailable', 'cannot resume the stream here now', {
          'Retry-After': '1',
        });
      },
    );
  }

  /** A resuming half admitted by the desk, on the node where its stream's halves meet. */
  #admitResume(arrival: StreamArrival, verdict: ResumeAdmitted): void {
    const remote = arrival.remote;
    const { claims, ticketKey } = verdict;
    if (!arrivalMayBe(arrival, claims.side, claims.deviceId))
      return arrival.refuse(401, 'IotHubUnauthorizedAccess', 'invalid resume ticket');
    const id = claims.streamId;
    // A half is back: the record it meets in reports the stream's fate from now on.
    this.#clearReturn(id);
    const running = this.#streams.get(id);
    if (running?.kind === 'fresh') {
      // The stream this ticket belongs to still runs here (its other half has not noticed the
      // loss yet): it ends now, and both halves meet again below.
      this.#end(running, {
        code: closeCodes.peerLost,
        reason: 'a side is resuming',
        kind: 'suspended',
      });
    }
    let record = running?.kind === 'resuming' ? running : undefined;
    if (record && Math.abs(record.generation - claims.generation) > 1) {
      const message = 'the resume ticket does not match its other half';
      this.#noisy('stream-resume', remote, 'stream resumption refused', {
        id,
        remote,
        reason: message,
      });
      return arrival.refuse(404, 'StreamNotFound', message);
    }
    if (!record) {
      record = this.#resumeRecord(claims, remote);
    } else {
      const older = record.sockets[claims.side];
      if (older) {
        // The same side again (an attempt whose socket the hub still holds): the newer wins.
        record.earlyClose?.get(older)?.call(undefined);
        record.earlyClose?.delete(older);
        record.early?.delete(older);
        delete record.sockets[claims.side];
        closeWebSocket(older, closeCodes.replaced, 'replaced by a newer resumption');
      }
    }
    record.presented.set(claims.side, ticketKey);
    arrival.authenticated();
    this.logger.info('stream resuming', {
      device: claims.deviceId,
      stream: claims.streamName,
      side: claims.side,
      id,
    });
    this.#attach(record, claims.side, arrival);
  }

  /** The meeting point of a resumable stream's halves, made by the first that comes back. */
  #resumeRecord(claims: ResumeClaims, remote: string | undefined): ResumingRecord {
    const record: ResumingRecord = Object.assign(
      emptyRecord({
        id: claims.streamId,
        origin: { policy: undefined, remote },
        deviceId: claims.deviceId,
        name: claims.streamName,
      }),
      {
        kind: 'resuming' as const,
        generation: claims.generation,
        presented: new Map<StreamSide, string>(),
      },
    );
    const windowMs = this.#desk?.windowMs ?? this.#pairTimeoutMs;
    record.timer = setTimeout(() => {
      record.timer = undefined;
      if (record.paired) return;
      this.logger.info('stream not resumed: its other side did not come back in time', {
        device: record.deviceId,
        stream: record.name,
        id: record.id,
      });
      this.#end(record, {
        code: closeCodes.pairTimeout,
        reason: 'the other side did not resume in time',
        kind: 'gave-up',
      });
    }, windowMs);
    this.#streams.add(record);
    return record;
  }

  /** Take an authenticated side's socket; pair the stream once both are here. */
  #attach(record: StreamRecord, side: StreamSide, arrival: StreamArrival): void {
    const id = record.id;
    arrival.open((ws) => {
      ws.on('error', socketErrorLogger(this.logger, id, side));
      if (this.#streams.get(id) !== record || record.sockets[side]) {
        // Cancelled, expired or replaced while the handshake was in progress.
        closeWebSocket(ws, closeCodes.shutdown, 'stream no longer exists');
        return;
      }
      this.#heartbeat?.add(ws);
      const messages: EarlyMessage[] = [];
      let listener = (data: RawData, isBinary: boolean): void =>
        void messages.push([data as Buffer, isBinary]);
      if (record.kind !== 'fresh') {
        // A resuming half may wait the whole resume window: it is read (so its pongs arrive
        // and neither heartbeat drops it), and it sends nothing but its `resume` before its
        // peer is back. Anything more is a broken or hostile end.
        let held = 0;
        listener = (raw: RawData, isBinary: boolean): void => {
          const data = raw as Buffer;
          held += data.length;
          if (isBinary || messages.length >= 4 || held > 4096)
            return closeWebSocket(
              ws,
              closeCodes.policyViolation,
              'payload before its peer resumed',
            );
          messages.push([data, isBinary]);
        };
      }
      ws.on('message', listener);
      // A fresh side stays paused (its bytes held in the kernel, or within its substream's
      // window) until its partner is here; a resuming one is read.
      if (record.kind !== 'fresh') ws.resume();
      (record.early ??= new Map()).set(ws, { messages, listener });
      record.sockets[side] = ws;
      const early = (): void => {
        if (record.paired) return;
        // A resuming half that leaves is only one attempt: the other may still come.
        if (record.kind === 'resuming') {
          if (record.sockets[side] === ws) delete record.sockets[side];
          record.early?.delete(ws);
          record.earlyClose?.delete(ws);
          return;
        }
        this.#end(record, {
          code: closeCodes.peerLost,
          reason: 'the other side left before pairing',
        });
      };
      ws.once('close', early);
      (record.earlyClose ??= new Map()).set(ws, early);
      const { device, service } = record.sockets;
      if (device && service) this.#pair(record, device, service);
    });
  }

  #pair(record: StreamRecord, device: StreamSocket, service: StreamSocket): void {
    record.paired = true;
    // Paired: the tickets that brought the halves back are spent (new ones follow).
    if (record.kind === 'resuming') {
      this.#desk?.spend(record.presented.values());
      this.#clearReturn(record.id);
    }
    if (record.timer) clearTimeout(record.timer);
    record.timer = undefined;
    for (const [ws, listener] of record.earlyClose ?? []) ws.off('close', listener);
    record.earlyClose = undefined;
    const backlog = (ws: StreamSocket): EarlyMessage[] => {
      const entry = record.early?.get(ws);
      if (!entry) return [];
      ws.off('message', entry.listener);
      return entry.messages;
    };
    const { resumable, fromService, fromDevice } = negotiate(
      { socket: service, backlog: backlog(service) },
      { socket: device, backlog: backlog(device) },
    );
    record.early = undefined;
    record.resumable = resumable;
    const started = Date.now();
    this.logger.debug('stream paired', {
      device: record.deviceId,
      stream: record.name,
      id: record.id,
    });
    if (resumable && record.kind === 'resuming') {
      this.logger.info('stream resumed', {
        device: record.deviceId,
        stream: record.name,
        id: record.id,
      });
      this.emit('stream-resumed', {
        id: record.id,
        deviceId: record.deviceId,
        name: record.name,
        generation: record.generation,
        waitedMs: Date.now() - record.createdAt,
        remote: record.origin.remote,
      });
    }
    const before = this.#relayedUpTo.get(record.id);
    this.#relayedUpTo.delete(record.id);
    record.pairing = { at: started, start: {}, before, forgeryLogged: false };
    // Tickets first: an end whose first ticket came with its stream offer may already have
    // sent its resume and payload, and its peer must hear of its own ticket before those.
    if (resumable) this.#sendTickets(record, device, service);
    relay(service, device, {
      events: this.#relayEvents,
      subject: record,
      backlog: { a: fromService, b: fromDevice },
      counts: record.counts,
      rawEofLingerMs: this.#rawEofLingerMs,
    });
  }

  /** What every stream's relay reports (a is the service side, b the device side). */
  readonly #relayEvents: RelayEvents<StreamRecord> = {
    resumed: (record, from, received) => {
      const pairing = record.pairing;
      // The device's resume says where the service side sends from, and the other way.
      const sender = from === 'b' ? 'a' : 'b';
      if (!pairing || pairing.start[sender] !== undefined) return;
      pairing.start[sender] = received;
      const relayedBefore = pairing.before?.[sender === 'a' ? 'service' : 'device'] ?? received;
      if (relayedBefore > received)
        this.emit('stream-replayed', {
          id: record.id,
          deviceId: record.deviceId,
          name: record.name,
          bytes: relayedBefore - received,
        });
    },
    forged: (record, from) => {
      if (!record.pairing || record.pairing.forgeryLogged) return;
      record.pairing.forgeryLogged = true;
      this.logger.warn('dropped a frame only the hub may send (ticket or plain) from an end', {
        device: record.deviceId,
        stream: record.name,
        id: record.id,
        side: from === 'a' ? 'service' : 'device',
      });
    },
    ended: (record, result) => {
      const pairing = record.pairing;
      this.#streams.remove(record);
      // A resumable stream ends for good with a normal close, or with an end's deliberate
      // reset (4001: its local connection failed, or its process stopped); anything else (a
      // lost socket, the hub going away) is a suspension that its ends may resume.
      const suspended =
        record.resumable &&
        record.endedBecause === undefined &&
        result.closeCode !== closeCodes.normal &&
        result.closeCode !== closeCodes.localError;
      if (!suspended) this.#desk?.finished(record.id);
      else {
        this.#awaitReturn(record);
        const start = pairing?.start;
        if (start?.a !== undefined && start.b !== undefined) {
          this.#relayedUpTo.set(record.id, {
            service: start.a + result.bytesAtoB,
            device: start.b + result.bytesBtoA,
          });
        }
      }
      // Live bytes are summed over the table; once a record leaves it, its bytes count here.
      this.#streams.addFinishedBytes(result.bytesAtoB, result.bytesBtoA);
      this.#emitEnd(record, {
        toDevice: result.bytesAtoB,
        fromDevice: result.bytesBtoA,
        reason:
          record.endedBecause ??
          `closed by ${result.closedBy === 'a' ? 'service' : 'device'} (${result.closeCode})`,
        kind: suspended ? 'suspended' : 'ended',
      });
      // debug: the audit log already has a line per stream, and at hundreds of streams a
      // second a second line per stream on stderr costs the hub several percent of its CPU.
      this.logger.debug('stream ended', {
        device: record.deviceId,
        stream: record.name,
        toDeviceBytes: result.bytesAtoB,
        fromDeviceBytes: result.bytesBtoA,
        durationMs: Date.now() - (pairing?.at ?? record.createdAt),
        closedBy: result.closedBy === 'a' ? 'service' : 'device',
        code: result.closeCode,
      });
    },
  };

  /**
   * A new stream's first ticket for one side, ahead of its pairing (a stream offer carries the
   * device's): undefined when this hub does not resume streams or the stream is not new here.
   */
  firstTicket(id: string, side: StreamSide): string | undefined {
    const record = this.#streams.get(id);
    if (!this.#desk || record?.kind !== 'fresh') return undefined;
    return this.#desk.issue(record, side, 1);
  }

  /** Hand both halves of a resumable stream their tickets for the next resumption. */
  #sendTickets(record: StreamRecord, device: StreamSocket, service: StreamSocket): void {
    const desk = this.#desk;
    if (!desk) return;
    const generation = (record.kind === 'resuming' ? record.generation : 0) + 1;
    for (const [side, ws] of [
      ['device', device],
      ['service', service],
    ] as const) {
      // Its offer carried this very ticket (same stream, side and generation): one message
      // and one wake-up of its end fewer.
      if (record.kind === 'fresh' && record.ticketed === side) continue;
      ws.send(formatStreamFrame({ type: 'ticket', ticket: desk.issue(record, side, generation) }));
    }
  }

  #emitEnd(
    record: StreamRecord,
    end: {
      readonly toDevice: number;
      readonly fromDevice: number;
      readonly reason: string;
      readonly kind?: EndKind | undefined;
    },
  ): void {
    this.emit('stream-end', {
      id: record.id,
      origin: record.origin,
      cancelled: end.kind === 'cancelled',
      deviceId: record.deviceId,
      name: record.name,
      paired: record.paired,
      bytesToDevice: end.toDevice,
      bytesFromDevice: end.fromDevice,
      durationMs: Date.now() - record.createdAt,
      reason: end.reason,
      suspended: end.kind === 'suspended',
      gaveUp: end.kind === 'gave-up',
    });
  }

  /**
   * A drained cluster node hands its resumable streams over: their sockets close as lost
   * (1001), so both ends resume them, through the balancer, on a node that stays. Resuming
   * halves waiting here are sent away the same way. Other streams are left to finish.
   * Returns how many streams were handed over.
   */
  handOver(): number {
    let handed = 0;
    for (const record of this.#streams.all()) {
      if (record.kind === 'fresh' && !(record.paired && record.resumable)) continue;
      handed++;
      if (!record.paired) {
        // Not an end: its halves try again elsewhere (no audit line; the suspension had one).
        this.#end(record, {
          code: closeCodes.goingAway,
          reason: 'hub node draining',
          kind: 'cancelled',
        });
        continue;
      }
      // The relay reports the end (suspended: closed with neither 1000 nor 4001).
      for (const ws of Object.values(record.sockets))
        closeWebSocket(ws, closeCodes.goingAway, 'hub node draining');
    }
    return handed;
  }

  /**
   * A suspended stream whose halves may never come back (both ends gone, the agent killed):
   * unless one returns within the resume window, it is reported as given up, so the audit
   * log and the metrics close its account. (A half that returns hands over to the record its
   * return makes, which reports its own end.)
   */
  #awaitReturn(record: StreamRecord): void {
    const windowMs = this.#desk?.windowMs;
    this.#clearReturn(record.id);
    // A half is already back (it is what ended this record: one end's link alone was lost).
    if (windowMs === undefined || this.#streams.get(record.id)) return;
    const timer = setTimeout(() => {
      this.#returning.delete(record.id);
      if (this.#streams.get(record.id)) return;
      this.logger.info('stream not resumed: neither side came back in time', {
        device: record.deviceId,
        stream: record.name,
        id: record.id,
      });
      this.#emitEnd(record, {
        toDevice: 0,
        fromDevice: 0,
        reason: 'neither side resumed in time',
        kind: 'gave-up',
      });
    }, windowMs);
    timer.unref();
    // Bounded like the desk's memories: past it the oldest wait is forgotten (not reported).
    this.#returning.set(record.id, timer);
  }

  #clearReturn(id: string): void {
    clearTimeout(this.#returning.get(id));
    this.#returning.delete(id);
  }

  /** Close all streams. */
  close(): void {
    for (const timer of this.#returning.values()) clearTimeout(timer);
    this.#returning.clear();
    for (const record of this.#streams.all())
      this.#end(record, { code: closeCodes.shutdown, reason: 'hub shutting down' });
    this.#wss.close();
  }
}
