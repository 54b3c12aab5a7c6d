import type { StreamSocket } from '../../net/stream-socket.js';
import { resumableStreamProtocol, streamProtocol } from '../../protocol/constants.js';
import { formatStreamFrame } from '../../protocol/stream-frames.js';
import type { EarlyMessage } from './relay.js';

/** One half of a stream as it pairs: its socket and what it sent while it waited. */
export interface PairingHalf {
  readonly socket: StreamSocket;
  readonly backlog: EarlyMessage[];
}

/**
 * What a pair of halves speak: resumably when both negotiated dstream.stream.v2; otherwise
 * v1 or raw bytes, and a resumable half is told so (`plain`, naming its peer) before any byte,
 * while what it sent while waiting (its `resume`) is dropped. Returns the backlogs to relay.
 */
export function negotiate(
  service: PairingHalf,
  device: PairingHalf,
): {
  readonly resumable: boolean;
  readonly fromService: EarlyMessage[];
  readonly fromDevice: EarlyMessage[];
} {
  const v2 = (ws: StreamSocket): boolean => ws.protocol === resumableStreamProtocol;
  if (v2(service.socket) && v2(device.socket))
    return { resumable: true, fromService: service.backlog, fromDevice: device.backlog };
  const told = (half: PairingHalf, other: PairingHalf): EarlyMessage[] => {
    if (!v2(half.socket)) return half.backlog;
    half.socket.send(
      formatStreamFrame({
        type: 'plain',
        peer: other.socket.protocol === streamProtocol ? 'v1' : 'raw',
      }),
    );
    return half.backlog.filter(([, isBinary]) => isBinary);
  };
  return {
    resumable: false,
    fromService: told(service, device),
    fromDevice: told(device, service),
  };
}
