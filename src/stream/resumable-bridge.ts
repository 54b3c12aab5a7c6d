import type { RawData } from 'ws';
import type { StreamSocket } from '../net/stream-socket.js';
import type { BridgeableStream } from './bridge.js';
import { closeWebSocket } from '../net/close.js';
import { resetSocket } from '../net/reset.js';
import { defaultHighWaterMark } from '../net/flow.js';
import { closeCodes } from '../protocol/constants.js';
import { AckTracker } from './ack-tracker.js';
import {
  formatStreamFrame,
  parseStreamFrame,
  type StreamFrame,
} from '../protocol/stream-frames.js';
import { ReplayBuffer, ReplayOffsetError } from './replay-buffer.js';
import type { ReplayBudget } from './replay-budget.js';

/**
 * One end of a resumable stream (`--resume`; chosen by carry.ts). The local TCP connection stays open while the
 * stream socket in the middle is lost and rebuilt: every byte read from it is kept until the
 * other end acknowledges it; after a reconnection each end says how much it has received
 * (`resume`) and the other sends again from there, so nothing is lost, duplicated or
 * reordered. Half-close travels as `eof` with the byte count, so it survives too.
 *
 * Protocol on each stream socket (docs: protocol/stream-frames.ts): the hub, once it has paired the
 * socket with a resumable peer, sends a `ticket` (or `plain` when the peer is not
 * resumable); on the ticket each end sends `resume{received}`, and payload only after the
 * peer's `resume` arrived; then
 * binary messages (payload) and `ack`/`eof`/`ticket` text frames. A normal end is a close
 * with 1000 by an end that has delivered and had acknowledged everything in both directions;
 * any other loss of the socket suspends the stream until it resumes or the window passes.
 */
export interface ResumableBridgeOptions {
  /**
   * Open a new stream socket for a resumption, given the latest ticket the hub handed out:
   * resolves with it open and paused (as net/hub-client's openWebSocket does); rejects to be
   * tried again after a backoff.
   */
  readonly reconnect: (ticket: string | undefined) => Promise<StreamSocket>;
  /** How long a suspended stream may take to resume before it ends with a reset. */
  readonly resumeWindowMs: number;
  /** Unacknowledged bytes kept for replay (default 8 MiB); past it the socket is paused. */
  readonly replayBytes?: number;
  /** Acknowledge after this many bytes (default a quarter of replayBytes, at most 256 KiB). */
  readonly ackEveryBytes?: number;
  /** Acknowledge what is left this long after the last payload (default 50 ms). */
  readonly ackIdleMs?: number;
  /** Jittered exponential backoff between reconnection attempts. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  readonly highWaterMark?: number;
  /** What the process keeps for replay across all its streams; past it, reading waits. */
  readonly budget?: ReplayBudget | undefined;
  readonly onEvent?: (event: ResumeEvent) => void;
  readonly onEnd?: (result: ResumableResult) => void;
  /**
   * The hub said the other end is not resumable (its first frame, before any byte): this
   * bridge lets go of both sockets, untouched, and the caller carries on with v1's bridge.
   */
  readonly onPlain?: (peer: 'v1' | 'raw') => void;
}

export type ResumeEvent =
  | { readonly type: 'suspended'; readonly reason: string }
  | {
      readonly type: 'resumed';
      readonly afterMs: number;
      readonly attempts: number;
      /** Bytes this end sent again. */
      readonly replayedBytes: number;
    };

export interface ResumableResult {
  readonly end: 'completed' | 'local-error' | 'peer-reset' | 'gave-up' | 'protocol-error';
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly resumptions: number;
  readonly reason: string | undefined;
}

export interface ResumableBridge {
  /** Bytes held for replay now (for tests and metrics). */
  readonly replayBytes: () => number;
  readonly suspended: () => boolean;
  /** End it now (the process is shutting down): no more resumptions; the socket is reset. */
  readonly close: () => void;
  /**
   * A deliberate end (the user stopped the process): the stream socket is closed normally,
   * which the other end takes as the stream's end (not a loss to resume from), and the local
   * side is ended. Suspended, there is nobody to tell: as close().
   */
  readonly stop: () => void;
}

const defaultReplayBytes = 8 * 1024 * 1024;

/**
 * The hub refused a resumption for good (the stream ended, the ticket is spent, the device was
 * disabled): `reconnect` rejects with this, and the stream ends at once instead of retrying.
 */
export class ResumeRefusedError extends Error {
  override readonly name = 'ResumeRefusedError';
}

/**
 * Bridge `socket` (connected, paused, allowHalfOpen, with an 'error' listener) and the first
 * stream socket `ws` (OPEN, paused or not), resuming across lost stream sockets.
 */
export function resumableBridge(
  socket: BridgeableStream,
  ws: StreamSocket,
  options: ResumableBridgeOptions,
): ResumableBridge {
  const replayCapacity = options.replayBytes ?? defaultReplayBytes;
  const replay = new ReplayBuffer(replayCapacity);
  const acks = new AckTracker(
    options.ackEveryBytes ?? Math.min(256 * 1024, Math.max(1, Math.floor(replayCapacity / 4))),
  );
  const high = options.highWaterMark ?? defaultHighWaterMark;
  const ackIdleMs = options.ackIdleMs ?? 50;
  // At most a second between attempts (half to a whole, jittered): a hub that restarts is
  // found within about a second of listening, at the cost of one refused connection a second
  // per suspended stream while it is away.
  const backoff = options.backoff ?? { initialMs: 100, maxMs: 1000 };
  const budget = options.budget;

  let current: StreamSocket | undefined;
  /** The peer's resume arrived on the current socket (or is presumed): payload may flow. */
  let peerResumed = false;
  /**
   * On the stream's first socket the peer's resume is known before it arrives (see 'ticket'):
   * payload flows from the ticket on, and the resume, when it comes, is only checked.
   */
  let resumePresumed = false;
  let inFlight = 0;
  let localEnded = false;
  let peerEof: number | undefined;
  let socketWriteEnded = false;
  /** Payload bytes from the peer handed to the socket (what a resume says). */
  let received = 0;
  /** Of those, bytes the socket has not taken yet. */
  let undelivered = 0;
  /**
   * Bytes the peer sends again after a resumption that this end had received already: the
   * resume asked from what the socket had taken, not from what had arrived (see 'ticket').
   */
  let duplicates = 0;
  let finished = false;
  let closingNormally = false;
  let ticket: string | undefined;
  /** This socket's resume was sent (after the hub's ticket on it). */
  let helloSent = false;
  let resumptions = 0;
  let suspendedAt: number | undefined;
  let attempts = 0;
  let ackTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;

  const send = (frame: StreamFrame): void => {
    if (current?.readyState === current?.OPEN) current?.send(formatStreamFrame(frame));
  };

  /** Read from the socket only while the bytes can go somewhere and the bounds allow it. */
  const updateFlow = (): void => {
    if (finished || localEnded) return;
    const canRead = current !== undefined && peerResumed && !replay.full && inFlight < high;
    if (canRead && budget?.full) {
      // Other streams hold the process's replay memory: wait for them to give some back.
      budget.wait(updateFlow);
      socket.pause();
    } else if (canRead) socket.resume();
    else socket.pause();
  };

  /** Run an acknowledging operation on the replay, giving what it frees back to the budget. */
  const freeing = <T>(op: () => T): T => {
    const before = replay.size;
    try {
      return op();
    } finally {
      budget?.give(before - replay.size);
    }
  };

  const sendPayload = (chunk: Buffer): void => {
    const ws = current;
    if (!ws || ws.readyState !== ws.OPEN) return;
    inFlight += chunk.length;
    ws.send(chunk, { binary: true }, () => {
      // A send on a socket since replaced does not count against the new one.
      if (ws !== current) return;
      inFlight -= chunk.length;
      updateFlow();
    });
  };

  const finish = (end: ResumableResult['end'], reason?: string): void => {
    if (finished) return;
    finished = true;
    budget?.forget(updateFlow);
    // What this stream kept is let go of with it.
    budget?.give(replay.size);
    clearTimeout(ackTimer);
    clearTimeout(retryTimer);
    if (end === 'completed') {
      if (!socketWriteEnded) socket.end();
    } else {
      // A stream that could not be completed must not look complete to the application.
      resetSocket(socket);
    }
    // An end this side chose (its local connection failed, or the peer broke the protocol) is
    // a deliberate reset: the hub and the other end end the stream too, rather than holding
    // it for a resumption that this end will never make.
    if (current && end !== 'completed')
      closeWebSocket(
        current,
        end === 'local-error' || end === 'protocol-error'
          ? closeCodes.localError
          : closeCodes.peerLost,
      );
    options.onEnd?.({
      end,
      bytesSent: replay.sent,
      bytesReceived: received,
      resumptions,
      reason,
    });
  };

  /** Everything delivered and acknowledged both ways: close normally. */
  const checkDone = (): void => {
    if (finished || !current || !peerResumed) return;
    if (!localEnded || replay.size > 0) return;
    if (peerEof === undefined || acks.received < peerEof || !socketWriteEnded) return;
    // (acks.received counts what the socket took: everything the peer sent has landed.)
    closingNormally = true;
    // Our last acknowledgement first, so the peer knows its bytes arrived.
    send({ type: 'ack', received: acks.take() });
    closeWebSocket(current, closeCodes.normal);
    finish('completed');
  };

  const ackNow = (): void => {
    clearTimeout(ackTimer);
    ackTimer = undefined;
    // Only counted as acknowledged once it is on its way: an acknowledgement taken while the
    // socket is gone would be lost, and the peer would keep those bytes (and wait) for ever.
    if (!acks.due || !current || current.readyState !== current.OPEN || !peerResumed) return;
    send({ type: 'ack', received: acks.take() });
  };

  /**
   * Payload from the peer. Counted as received at once (a resume asks for what comes after),
   * acknowledged only once the socket has taken it: the peer keeps at most its replay bound
   * unacknowledged, so that bound is also what this end can hold for a slow application.
   * The stream socket is never paused for the application, so acknowledgements and control
   * frames keep flowing both ways (pausing it would also stall the acks this end needs).
   */
  const onPayload = (payload: Buffer): void => {
    let data = payload;
    if (duplicates > 0) {
      const skip = Math.min(duplicates, data.length);
      duplicates -= skip;
      if (skip === data.length) return;
      data = data.subarray(skip);
    }
    if (peerEof !== undefined && received + data.length > peerEof)
      return finish('protocol-error', 'payload after the peer said it had ended');
    received += data.length;
    const n = data.length;
    // A peer keeps at most its replay bound unacknowledged, and this end acknowledges only
    // what the socket took: more than that waiting for the socket means the peer ignores the
    // acknowledgements. Bounded here, whatever the peer does.
    undelivered += n;
    if (undelivered > replayCapacity + high)
      return finish('protocol-error', 'the peer sent past its replay window');
    socket.write(data, () => {
      undelivered -= n;
      if (finished) return;
      if (acks.onData(n)) ackNow();
      else ackTimer ??= setTimeout(ackNow, ackIdleMs);
      checkDone();
    });
    endSocketIfDelivered();
  };

  const endSocketIfDelivered = (): void => {
    if (peerEof !== undefined && received === peerEof && !socketWriteEnded) {
      socketWriteEnded = true;
      socket.end();
    }
  };

  /** Hand both sockets back as they are (nothing was read from the socket yet). */
  const letGo = (peer: 'v1' | 'raw'): void => {
    finished = true;
    clearTimeout(ackTimer);
    clearTimeout(retryTimer);
    socket.off('data', onSocketData);
    socket.off('end', onSocketEnd);
    socket.off('error', onSocketError);
    socket.off('close', onSocketClose);
    socket.pause();
    options.onPlain?.(peer);
  };

  const onControl = (frame: StreamFrame): void => {
    switch (frame.type) {
      case 'plain':
        return;
      case 'resume': {
        if (resumePresumed) {
          resumePresumed = false;
          if (frame.received !== 0)
            return finish('protocol-error', 'a first resume that is not from the start');
          return;
        }
        if (peerResumed) return finish('protocol-error', 'a second resume on one socket');
        peerResumed = true;
        let chunks: Buffer[];
        try {
          chunks = freeing(() => replay.replayFrom(frame.received));
        } catch (error) {
          if (error instanceof ReplayOffsetError) return finish('protocol-error', error.message);
          throw error;
        }
        let replayed = 0;
        for (const chunk of chunks) {
          replayed += chunk.length;
          sendPayload(chunk);
        }
        if (localEnded) send({ type: 'eof', sent: replay.sent });
        ackNow(); // what was passed on while the socket was away
        if (suspendedAt !== undefined) {
          options.onEvent?.({
            type: 'resumed',
            afterMs: Date.now() - suspendedAt,
            attempts,
            replayedBytes: replayed,
          });
          suspendedAt = undefined;
          attempts = 0;
        }
        updateFlow();
        return checkDone();
      }
      case 'ack':
        // A resume already acknowledged what the peer had received, which may be more than
        // what it has since passed on and acknowledges now: an older count changes nothing.
        if (frame.received <= replay.acked) return checkDone();
        try {
          freeing(() => replay.ack(frame.received));
        } catch (error) {
          if (error instanceof ReplayOffsetError) return finish('protocol-error', error.message);
          throw error;
        }
        updateFlow();
        return checkDone();
      case 'eof':
        if (peerEof !== undefined && peerEof !== frame.sent)
          return finish('protocol-error', 'the peer changed its end offset');
        if (frame.sent < received)
          return finish('protocol-error', 'the peer ended before bytes it had sent');
        peerEof = frame.sent;
        endSocketIfDelivered();
        return checkDone();
      case 'ticket':
        ticket = frame.ticket;
        // The hub hands out a ticket when it has paired this socket with a resumable peer:
        // only then is it safe to speak v2 (a v1 or raw peer would take a resume frame for data).
        if (!helloSent) {
          helloSent = true;
          // From what the socket has taken, not from what has arrived: the peer drops what a
          // resume names, and its replay bound (the window this end's memory relies on) starts
          // again from there. Resuming from `received` with bytes still queued for a slow
          // reader would let the peer send a whole window more on top of them. The bytes in
          // between come again and are dropped here (`duplicates`).
          duplicates = undelivered;
          send({ type: 'resume', received: received - undelivered });
          // The stream's first socket: the peer can have received nothing (the hub hands out
          // both tickets before it relays a byte, and no end sends payload before its ticket),
          // so its resume will say 0. Waiting for it would cost a round trip through the hub
          // before the first byte; payload goes now, after this end's own resume, which is
          // all the peer waits for.
          if (resumptions === 0 && received === 0 && replay.sent === 0) {
            peerResumed = resumePresumed = true;
            updateFlow();
          }
        }
        return;
    }
  };

  /**
   * Take an open stream socket. It comes paused (see net/hub-client.ts: frames that arrive
   * with the handshake's answer are emitted at once, before a promise continuation could add
   * a listener), and is resumed once listened to.
   */
  const attach = (ws: StreamSocket): void => {
    current = ws;
    peerResumed = resumePresumed = false;
    inFlight = 0;
    ws.on('error', () => undefined);
    const onMessage = (data: RawData, isBinary: boolean): void => {
      if (finished || ws !== current) return;
      const buf = data as Buffer;
      if (isBinary) {
        if (!peerResumed) return finish('protocol-error', 'payload before the peer resumed');
        return onPayload(buf);
      }
      const frame = parseStreamFrame(buf.toString('utf8'));
      if (!frame) return finish('protocol-error', 'an invalid stream frame');
      if (frame.type === 'plain') {
        if (peerResumed || resumptions > 0 || replay.sent > 0 || !options.onPlain)
          return finish('protocol-error', 'an unexpected plain frame');
        ws.off('message', onMessage);
        ws.off('close', onClose);
        return letGo(frame.peer);
      }
      onControl(frame);
    };
    const onClose = (code: number): void => {
      if (ws !== current || finished) return;
      current = undefined;
      peerResumed = false;
      if (code === closeCodes.normal && !closingNormally) {
        // The peer closes normally only once everything arrived both ways.
        if (!socketWriteEnded) socket.end();
        return finish('completed');
      }
      // The other end reset the stream on purpose (its local connection failed, or its
      // process was stopped): nothing to resume.
      if (code === closeCodes.localError)
        return finish('peer-reset', 'the other end reset the stream');
      suspend(`stream socket closed (${code})`);
    };
    ws.on('message', onMessage);
    ws.once('close', onClose);
    helloSent = false;
    ws.resume();
  };

  const suspend = (reason: string): void => {
    socket.pause();
    clearTimeout(ackTimer);
    ackTimer = undefined;
    suspendedAt = Date.now();
    attempts = 0;
    options.onEvent?.({ type: 'suspended', reason });
    const deadline = suspendedAt + options.resumeWindowMs;
    const tryOnce = (): void => {
      if (finished) return;
      attempts++;
      options.reconnect(ticket).then(
        (ws) => {
          if (finished) return closeWebSocket(ws, closeCodes.normal);
          resumptions++;
          attach(ws);
        },
        (error: unknown) => {
          if (finished) return;
          if (error instanceof ResumeRefusedError)
            return finish('gave-up', `the hub refused to resume the stream: ${error.message}`);
          const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempts - 1, 16));
          // Jitter: ends that lost the hub together do not come back in lockstep.
          const delay = base / 2 + Math.random() * (base / 2);
          if (Date.now() + delay > deadline)
            return finish(
              'gave-up',
              `did not resume within ${Math.round(options.resumeWindowMs / 1000)} s`,
            );
          retryTimer = setTimeout(tryOnce, delay);
        },
      );
    };
    tryOnce();
  };

  const onSocketData = (chunk: Buffer): void => {
    if (finished) return;
    replay.push(chunk);
    budget?.take(chunk.length);
    if (peerResumed) sendPayload(chunk);
    updateFlow();
  };
  const onSocketEnd = (): void => {
    if (finished) return;
    localEnded = true;
    if (peerResumed) send({ type: 'eof', sent: replay.sent });
    checkDone();
  };
  const onSocketError = (error: Error): void => finish('local-error', error.message);
  const onSocketClose = (): void => {
    if (!finished && !(localEnded && socketWriteEnded)) finish('local-error', 'socket closed');
  };
  // Nothing is read before the hub has told this end what its peer is (a ticket or `plain`):
  // a server that speaks first (sshd's banner) would otherwise have bytes taken into the
  // replay buffer that a plain (v1 or raw) peer never gets. Paused first, listening to
  // 'data' does not start the flow; updateFlow() does, once the peer has resumed.
  socket.pause();
  socket.on('data', onSocketData);
  socket.on('end', onSocketEnd);
  socket.on('error', onSocketError);
  socket.on('close', onSocketClose);

  attach(ws);
  return {
    replayBytes: () => replay.size,
    suspended: () => current === undefined,
    close: () => finish('local-error', 'closed'),
    stop: () => {
      if (finished) return;
      if (!current) return finish('local-error', 'stopped while suspended');
      closingNormally = true;
      closeWebSocket(current, closeCodes.normal, 'stopped');
      finish('completed');
    },
  };
}
