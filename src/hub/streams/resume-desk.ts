import { resumableStreamProtocol } from '../../protocol/constants.js';
import {
  signResumeTicket,
  verifyResumeTicket,
  type ResumeClaims,
  type StreamSide,
} from '../../protocol/resume-ticket.js';
import type { IotHubErrorName } from '../../protocol/iothub-error.js';
import { BoundedMemory } from '../base/bounded-memory.js';

/** How long a resume ticket is good for; the resume window is enforced beside it. */
const ticketLifetimeS = 24 * 3600;

/**
 * Entries each of the desk's memories keeps (spent tickets, finished streams, revoked
 * devices); past it the oldest is forgotten first. At 100,000 a memory holds a few MiB.
 */
export const resumeMemoryBound = 100_000;

export interface ResumeDeskOptions {
  /** The key tickets are signed with (the data dir's resume.key). */
  readonly key: Buffer;
  /** How long a suspended stream waits for its halves (ms). */
  readonly windowMs: number;
  /** Whether a device may still have its streams (disabled or removed devices do not). */
  readonly deviceAllowed: (deviceId: string) => boolean;
  /** Entries per memory (default resumeMemoryBound). */
  readonly memoryBound?: number | undefined;
  /** In a cluster, this node's id: written into the tickets it issues (where to meet again). */
  readonly nodeId?: string | undefined;
}

/** A resumption the desk lets through: whose ticket it is, and its key for spending it. */
export interface ResumeAdmitted {
  readonly ok: true;
  readonly claims: ResumeClaims;
  /** "id|side|generation": spent when the halves pair (spend()). */
  readonly ticketKey: string;
}

/** A resumption the desk refuses, with IoT Hub's status and error name. */
export interface ResumeRefused {
  readonly ok: false;
  /** 401: the ticket does not verify (a guess; counted against the address); others are not. */
  readonly status: 400 | 401 | 403 | 404;
  readonly errorCode: IotHubErrorName;
  readonly message: string;
}

const refused = (status: ResumeRefused['status'], message: string): ResumeRefused => ({
  ok: false,
  status,
  errorCode:
    status === 403
      ? 'DeviceDisabled'
      : status === 400
        ? 'ArgumentInvalid'
        : status === 404
          ? 'StreamNotFound'
          : 'IotHubUnauthorizedAccess',
  message,
});

/**
 * The hub's resume desk: issues the tickets of resumable streams and judges the halves that
 * come back with them. The ticket, not this process's memory, says which stream, device, side
 * and generation it is for, so a restarted hub takes it too; what the desk remembers only
 * takes tickets away: spent ones, those of streams that ended, those of devices revoked since.
 * Each memory is bounded (resumeMemoryBound), oldest forgotten first, and held in memory only.
 */
export class ResumeDesk {
  readonly windowMs: number;
  readonly #spent: BoundedMemory<true>;
  readonly #finished: BoundedMemory<true>;
  /**
   * When a device was last disabled, removed or re-keyed (ms): tickets issued before then do
   * not bring its streams back, even once it is enabled again.
   */
  readonly #revokedAt: BoundedMemory<number>;

  constructor(private readonly options: ResumeDeskOptions) {
    this.windowMs = options.windowMs;
    const bound = options.memoryBound ?? resumeMemoryBound;
    this.#spent = new BoundedMemory(bound);
    this.#finished = new BoundedMemory(bound);
    this.#revokedAt = new BoundedMemory(bound);
  }

  /**
   * Judge a half coming back to stream `streamId` with `ticket`, offering `protocols`. A
   * genuine ticket that can no longer be used is 404 StreamNotFound, so that the end stops
   * trying without its address being counted as guessing.
   */
  admit(
    streamId: string,
    ticket: string,
    protocols: readonly string[],
    nowMs = Date.now(),
  ): ResumeAdmitted | ResumeRefused {
    const check = verifyResumeTicket([this.options.key], ticket, undefined, nowMs / 1000);
    if (!check.ok) return refused(401, check.message);
    const claims = check.claims;
    if (claims.streamId !== streamId)
      return refused(401, 'the resume ticket is for another stream');
    const ticketKey = `${streamId}|${claims.side}|${claims.generation}`;
    if (this.#spent.has(ticketKey)) return refused(404, 'the resume ticket was already used');
    if (this.#finished.has(streamId)) return refused(404, 'the stream has ended');
    if (!protocols.includes(resumableStreamProtocol))
      return refused(400, `resuming needs the ${resumableStreamProtocol} subprotocol`);
    // A device disabled or removed meanwhile does not get its streams back.
    if (!this.options.deviceAllowed(claims.deviceId))
      return refused(403, `device '${claims.deviceId}' is disabled or no longer registered`);
    // Enabled again within the window: still not. A disable is meant to end its streams.
    const revokedAt = this.#revokedAt.get(claims.deviceId);
    if (revokedAt !== undefined && (claims.expiresAt - ticketLifetimeS) * 1000 <= revokedAt)
      return refused(
        404,
        `device '${claims.deviceId}' was disabled, removed or re-keyed since the stream was suspended`,
      );
    return { ok: true, claims, ticketKey };
  }

  /** The halves paired: the tickets that brought them back are spent. */
  spend(ticketKeys: Iterable<string>): void {
    for (const key of ticketKeys) this.#spent.set(key, true);
  }

  /** A stream ended for good: its tickets are void from now on. */
  finished(streamId: string): void {
    this.#finished.set(streamId, true);
  }

  /** A device was disabled, removed or re-keyed: its suspended streams do not come back. */
  revoke(deviceId: string, nowMs = Date.now()): void {
    this.#revokedAt.set(deviceId, nowMs);
  }

  /** The ticket for one side's next resumption, after a pairing of generation `generation - 1`. */
  issue(
    stream: { readonly id: string; readonly deviceId: string; readonly name: string },
    side: StreamSide,
    generation: number,
    nowMs = Date.now(),
  ): string {
    return signResumeTicket(this.options.key, {
      streamId: stream.id,
      deviceId: stream.deviceId,
      streamName: stream.name,
      side,
      generation,
      expiresAt: Math.floor(nowMs / 1000) + ticketLifetimeS,
      node: this.options.nodeId,
    });
  }
}
