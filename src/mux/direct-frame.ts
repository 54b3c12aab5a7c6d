/**
 * A carrier message written straight to the socket under its WebSocket, as one whole frame.
 *
 * Why: `ws` sends a message as two buffers, its frame header and the message, and Node's TLS
 * socket copies a write of several buffers into one new, zeroed buffer before it encrypts it
 * (`TLSWrap::DoWrite`). A carrier connection puts each message together in a buffer of its own
 * anyway (mux-session.ts), so it leaves room for the header in front and hands the socket one
 * buffer, which is encrypted where it lies: a copy, a zeroing and an allocation the size of
 * the message fewer at every sending hop (docs/benchmark.md, "One buffer per message").
 *
 * The bytes on the wire are what `ws` would have sent: a final binary frame (RFC 6455 5.2),
 * from a client with the mask bit and an all-zero key (what `openWebSocket` has `ws` send on
 * TLS, where no proxy can see the frames), from a server unmasked.
 */

/** What a session writes its messages to: the socket under its WebSocket. */
export interface DirectSocket {
  write(data: Buffer, callback: (error?: Error | null) => void): boolean;
}

/** Where a carrier connection may write its own frames, and whether they are a client's. */
export interface DirectFraming {
  readonly socket: DirectSocket;
  /** A client's frames: the mask bit set and an all-zero key (only ever on TLS). */
  readonly masked: boolean;
}

/** Bytes kept free in front of a message for its frame header: 2 + 8 + a 4-byte mask key. */
export const frameHeaderRoom = 14;

/** The length of the header of a frame of `size` payload bytes. */
export function frameHeaderLength(size: number, masked: boolean): number {
  return (size < 126 ? 2 : size < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

/**
 * Write the header of a final binary frame of `size` bytes into `buffer` so that it ends at
 * `end` (where the payload starts). Returns where the header starts.
 */
export function writeFrameHeader(
  buffer: Buffer,
  end: number,
  size: number,
  masked: boolean,
): number {
  const start = end - frameHeaderLength(size, masked);
  const maskBit = masked ? 0x80 : 0;
  buffer[start] = 0x82; // FIN, binary
  let at = start + 2;
  if (size < 126) buffer[start + 1] = maskBit | size;
  else if (size < 65536) {
    buffer[start + 1] = maskBit | 126;
    at = buffer.writeUInt16BE(size, at);
  } else {
    buffer[start + 1] = maskBit | 127;
    at = buffer.writeUInt32BE(Math.floor(size / 2 ** 32), at);
    at = buffer.writeUInt32BE(size >>> 0, at);
  }
  if (masked) buffer.writeUInt32BE(0, at);
  return start;
}
