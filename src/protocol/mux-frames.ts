/**
 * The multiplexed carrier's framing (`dstream.mux.v1`, docs/protocol.md "The multiplexed
 * carrier"). A carrier connection is one WebSocket; each binary message on it holds one or
 * more whole frames:
 *
 *     type: u8 | stream: u32 big-endian | length: u32 big-endian | payload: length bytes
 *
 * A stream here is a substream of the connection: it is opened, carried, half-closed (by the
 * stream frames it carries) and closed inside the connection, with its own credit window.
 */

/** Subprotocol of a carrier connection. */
export const muxProtocol = 'dstream.mux.v1';

/** Bytes of a frame's header. */
export const muxHeaderBytes = 9;

export const MuxFrameType = {
  /** Opener -> acceptor: JSON {path, authorization, protocols}. The first frame of a stream. */
  open: 1,
  /** Acceptor -> opener: JSON {protocol}: the stream is accepted, speaking `protocol`. */
  accept: 2,
  /** Acceptor -> opener, instead of accept: u16 status, then IoT Hub's error JSON. Closes. */
  refuse: 3,
  /** Payload bytes (a binary message on a stream socket); uses credit. */
  data: 4,
  /** A stream frame (a text message on a stream socket), UTF-8; uses credit. */
  text: 5,
  /** u32: the receiver of this frame may send that many more payload bytes. */
  window: 6,
  /** u16 close code, then a UTF-8 reason: this side sends nothing more on the stream. */
  close: 7,
} as const;
export type MuxFrameType = (typeof MuxFrameType)[keyof typeof MuxFrameType];

/** Credit each direction of a stream starts with, before any `window` frame. */
export const muxInitialWindow = 256 * 1024;
/** Largest payload of a `data` or `text` frame. */
export const muxMaxPayload = 16 * 1024;
/** Largest payload of an `open`, `accept` or `refuse` frame. */
export const muxMaxHandshake = 4096;
/** Largest payload of a `close` frame (a WebSocket close's 125). */
export const muxMaxClose = 125;
/** Credit may never exceed this (a window overflow is a protocol error, as in HTTP/2). */
export const muxMaxCredit = 2 ** 31 - 1;

/**
 * The upgrade header of a device's carrier connection that takes stream offers (`1`): the hub
 * may open the device's halves on it (a substream `open` of the streaming path whose headers
 * name the stream), and the agent's `accept` or `refuse` is its answer to the stream request.
 */
export const muxOffersHeader = 'dstream-stream-offers';
/**
 * In a cluster, the header of the answer to a device's control connection upgrade: where the
 * device's carrier connection goes so that stream offers reach it (`wss://<node>`: the node
 * that holds the control connection, since offers come only on a carrier connection there).
 */
export const muxCarrierOriginHeader = 'dstream-carrier-origin';
/** In a stream offer's `open` headers: the stream name asked for (the stream request's). */
export const muxStreamNameHeader = 'stream-name';

/** What an opener asks for: a stream socket's upgrade, carried in a frame. */
export interface MuxOpenRequest {
  /**
   * The streaming URL's path, `/bridges/<stream id>`; or, from a service's carrier connection,
   * IoT Hub's initiation path `/twins/<device id>/streams/<stream name>`: ask for the stream
   * and open it in one step.
   */
  readonly path: string;
  /**
   * `Bearer <stream token>` or `Resume <ticket>`, as the WebSocket upgrade's header; for an
   * initiation, the service's SAS token, as the POST's.
   */
  readonly authorization: string;
  /** The stream protocols offered, preferred first (the WebSocket subprotocols). */
  readonly protocols: readonly string[];
  /** An initiation's timeout headers, as the POST's (lower-case names, string values). */
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

/**
 * Called for each frame of a carrier message, in order: `payload` is a view into the message
 * (not a copy). Returning false stops the reading (the connection was closed by a frame).
 */
export type MuxFrameVisitor = (type: MuxFrameType, stream: number, payload: Buffer) => boolean;

/** Why a message is not valid framing; the connection is then closed with 1002. */
export class MuxProtocolError extends Error {
  override readonly name = 'MuxProtocolError';
}

const maxPayloadOf: Record<MuxFrameType, number> = {
  [MuxFrameType.open]: muxMaxHandshake,
  [MuxFrameType.accept]: muxMaxHandshake,
  [MuxFrameType.refuse]: muxMaxHandshake,
  [MuxFrameType.data]: muxMaxPayload,
  [MuxFrameType.text]: muxMaxPayload,
  [MuxFrameType.window]: 4,
  [MuxFrameType.close]: muxMaxClose,
};

const isFrameType = (t: number): t is MuxFrameType => t >= 1 && t <= 7;

/**
 * Read the frames of one carrier message, checked for shape (type, lengths, a stream id above
 * 0), handing each to `visit`; what they mean to a stream is the session's to check. Throws
 * MuxProtocolError. A callback, not a generator: a generator's object, its `{ value, done }`
 * results and an object per frame were about a kilobyte of garbage per 64 KiB message at every
 * hop (docs/benchmark.md, "Bulk per hop").
 */
export function readMuxFrames(message: Buffer, visit: MuxFrameVisitor): void {
  let at = 0;
  if (message.length === 0) throw new MuxProtocolError('empty carrier message');
  while (at < message.length) {
    if (message.length - at < muxHeaderBytes) throw new MuxProtocolError('truncated frame header');
    const type = message.readUInt8(at);
    const stream = message.readUInt32BE(at + 1);
    const length = message.readUInt32BE(at + 5);
    if (!isFrameType(type)) throw new MuxProtocolError(`unknown frame type ${type}`);
    if (stream === 0) throw new MuxProtocolError('stream id 0');
    if (length > maxPayloadOf[type]) throw new MuxProtocolError(`frame too long (type ${type})`);
    if ((type === MuxFrameType.data || type === MuxFrameType.text) && length === 0)
      throw new MuxProtocolError('empty payload frame');
    if (type === MuxFrameType.window && length !== 4)
      throw new MuxProtocolError('window frame without a u32');
    if ((type === MuxFrameType.close || type === MuxFrameType.refuse) && length < 2)
      throw new MuxProtocolError('close or refuse frame without a code');
    at += muxHeaderBytes;
    if (message.length - at < length) throw new MuxProtocolError('truncated frame payload');
    if (!visit(type, stream, message.subarray(at, at + length))) return;
    at += length;
  }
}

/** Write a frame's header at `at` of `target`; returns the offset after it. */
export function writeMuxHeader(
  target: Buffer,
  at: number,
  type: MuxFrameType,
  stream: number,
  length: number,
): number {
  target.writeUInt8(type, at);
  target.writeUInt32BE(stream, at + 1);
  target.writeUInt32BE(length, at + 5);
  return at + muxHeaderBytes;
}

/** A `close` frame's payload (or a `refuse` frame's: the status takes the code's place). */
export function codeAndText(code: number, text: string, max: number): Buffer {
  const body = Buffer.from(text, 'utf8');
  const payload = Buffer.allocUnsafe(2 + Math.min(body.length, max - 2));
  payload.writeUInt16BE(code, 0);
  body.copy(payload, 2, 0, payload.length - 2);
  return payload;
}

/** The JSON payload of an `open` frame, checked; throws MuxProtocolError. */
export function parseOpenRequest(payload: Buffer): MuxOpenRequest {
  const o = parseJsonObject(payload);
  const { path, authorization, protocols } = o;
  if (
    typeof path !== 'string' ||
    typeof authorization !== 'string' ||
    !Array.isArray(protocols) ||
    protocols.length > 8 ||
    !protocols.every((p): p is string => typeof p === 'string')
  )
    throw new MuxProtocolError('open frame without path, authorization and protocols');
  const headers = o.headers;
  if (headers === undefined) return { path, authorization, protocols };
  if (
    typeof headers !== 'object' ||
    headers === null ||
    Array.isArray(headers) ||
    Object.keys(headers).length > 8 ||
    !Object.values(headers).every((v) => typeof v === 'string')
  )
    throw new MuxProtocolError('open frame headers must be an object of at most 8 strings');
  return { path, authorization, protocols, headers: headers as Record<string, string> };
}

/** What an `accept` frame says. */
export interface MuxAccept {
  /** The stream protocol chosen ('' for none: a raw stream). */
  readonly protocol: string;
  /**
   * The accepted stream's streaming path (`/bridges/<stream id>`), named when it was opened by
   * another path (an initiation): resumptions open that.
   */
  readonly path?: string | undefined;
}

/** What an `accept` frame says; throws MuxProtocolError. */
export function parseAccept(payload: Buffer): MuxAccept {
  const { protocol, path } = parseJsonObject(payload);
  if (typeof protocol !== 'string') throw new MuxProtocolError('accept frame without protocol');
  if (path === undefined) return { protocol };
  if (
    typeof path !== 'string' ||
    !path.startsWith('/') ||
    path.startsWith('//') ||
    path.length > 1024
  )
    throw new MuxProtocolError('accept frame with a path that is not an absolute path');
  return { protocol, path };
}

function parseJsonObject(payload: Buffer): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new MuxProtocolError('frame payload is not JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o))
    throw new MuxProtocolError('frame payload is not a JSON object');
  return o as Record<string, unknown>;
}
