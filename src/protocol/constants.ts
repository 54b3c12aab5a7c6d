/** Names shared by hub and clients. See docs/protocol.md. */

/** Subprotocol of the device control WebSocket. */
export const controlProtocol = 'dstream.control.v1';
/**
 * Subprotocol a stream socket may offer. Without it a stream socket carries raw bytes only
 * (Azure's format); with it, a text frame {"type":"eof"} also signals a half-close.
 */
export const streamProtocol = 'dstream.stream.v1';
/** v1's half-close: a text frame on a dstream.stream.v1 socket (a v2 end told `plain` too). */
export const eofFrame = JSON.stringify({ type: 'eof' });
/** Resumable streams between dstream's own ends (src/stream/): acknowledged bytes, replay. */
export const resumableStreamProtocol = 'dstream.stream.v2';

/** Azure IoT Hub's stream-initiation headers. */
export const headers = {
  connectTimeout: 'iothub-streaming-connect-timeout-in-seconds',
  responseTimeout: 'iothub-streaming-response-timeout-in-seconds',
  isAccepted: 'iothub-streaming-is-accepted',
  url: 'iothub-streaming-url',
  authToken: 'iothub-streaming-auth-token',
} as const;

/** API version the clients send; the hub accepts any. */
export const apiVersion = '2021-04-12';

/** Lifetime of a stream's single-use tokens, and how long a stream waits for its second side. */
export const streamTokenTtlMs = 60_000;

/**
 * After one side's half-close toward a raw (Azure) peer, which cannot be told of it, the hub
 * closes the stream normally once the raw peer has sent nothing for this long (--raw-eof-linger).
 */
export const defaultRawEofLingerMs = 2_000;

/** Close codes on stream sockets (RFC 6455 allows 4000-4999 for applications). */
export const closeCodes = {
  normal: 1000,
  /** The hub is draining: reconnect (elsewhere) at once. */
  goingAway: 1001,
  /** The other side of the stream went away without a clean close. */
  peerLost: 4000,
  /** The local TCP connection failed (reset, error). */
  localError: 4001,
  /** The second side never arrived in time. */
  pairTimeout: 4002,
  /** The hub is shutting down or the device was disabled/removed. */
  shutdown: 4003,
  /** A newer control connection for the same device replaced this one. */
  replaced: 4004,
  /** A control message broke the protocol. */
  policyViolation: 1008,
} as const;
