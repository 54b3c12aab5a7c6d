import type { BridgeResult } from './bridge.js';
import { closeCodes } from '../protocol/constants.js';
import type { LogFields } from '../log/logger.js';

const peerCloseReasons: Readonly<Record<number, string>> = {
  1001: 'the hub is going away',
  1006: 'the connection to the hub was lost',
  [closeCodes.peerLost]: 'the other side was lost',
  [closeCodes.localError]: "the other side's connection failed",
  [closeCodes.pairTimeout]: 'the other side never arrived',
  [closeCodes.shutdown]: 'the hub shut down or the device was disabled',
};

/** Why a bridged stream ended, in a few words a person can act on. */
export function whyStreamEnded(result: BridgeResult): string {
  if (result.end === 'completed') return 'closed normally';
  if (result.end === 'local-error')
    return `local connection failed${result.error ? `: ${result.error.message}` : ''}`;
  return peerCloseReasons[result.closeCode] ?? `closed by the hub (code ${result.closeCode})`;
}

/**
 * The fields of the one line logged when a stream ends: how, why, bytes each way, duration.
 * Text logs show the byte and duration fields in human units; JSON keeps the numbers.
 */
export function streamEndFields(result: BridgeResult, durationMs: number): LogFields {
  return {
    end: result.end,
    why: whyStreamEnded(result),
    sentBytes: result.bytesSent,
    receivedBytes: result.bytesReceived,
    durationMs,
  };
}
