import { DstreamError } from '../errors.js';
import { deviceIdProblem, streamNameProblem } from '../protocol/identifiers.js';

/** One local forward: listen on bind:port, stream each connection to device/stream. */
export interface Forward {
  readonly bind: string;
  readonly port: number;
  readonly deviceId: string;
  /** A remote port ("22") or a named stream ("rdp"). */
  readonly streamName: string;
}

function usage(spec: string, why: string): DstreamError {
  return new DstreamError('ERR_USAGE', `-L ${spec}: ${why}`, {
    hint: 'Use [BIND:]PORT:DEVICE:REMOTE, e.g. -L 2222:pi-01:22 or -L 127.0.0.1:3389:pi-01:rdp',
  });
}

/**
 * Parse OpenSSH-style `[BIND:]PORT:DEVICE:REMOTE`. Device IDs may contain ':', so the spec is
 * read from both ends: REMOTE is the last field, PORT the first numeric one of the first two.
 */
export function parseForward(spec: string, defaultBind: string): Forward {
  let rest = spec;
  let bind: string | undefined;
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:(.*)$/.exec(rest);
  if (v6) {
    bind = v6[1];
    rest = v6[2] ?? '';
  }
  const fields = rest.split(':');
  if (fields.length < 3 || (bind === undefined && fields.length < 3))
    throw usage(spec, 'too few fields');
  const remote = fields.pop() ?? '';
  if (bind === undefined && !/^\d+$/.test(fields[0] ?? '')) bind = fields.shift();
  const portText = fields.shift() ?? '';
  const deviceId = fields.join(':');
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 0 && port <= 65535)) throw usage(spec, `'${portText}' is not a local port`);
  const idProblem = deviceIdProblem(deviceId);
  if (idProblem) throw usage(spec, idProblem);
  const nameProblem = streamNameProblem(remote);
  if (nameProblem) throw usage(spec, nameProblem);
  if (/^\d+$/.test(remote) && !(Number(remote) >= 1 && Number(remote) <= 65535))
    throw usage(spec, `'${remote}' is not a remote port`);
  return {
    bind: bind === undefined || bind === '' ? defaultBind : bind,
    port,
    deviceId,
    streamName: remote,
  };
}
