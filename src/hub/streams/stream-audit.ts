import type { AuditLog } from '../store/audit-log.js';
import type { StreamEndInfo, StreamEndpoint } from './stream-endpoint.js';

/**
 * One audit line per accepted stream, when it ends, with its byte counts and duration
 * (refusals are audited where they are decided: stream-initiation.ts). A stream the service
 * cancelled before it was offered has no line.
 */
export function auditStreamEnds(streams: StreamEndpoint, audit: AuditLog): void {
  streams.on('stream-end', (info: StreamEndInfo) => {
    if (info.cancelled) return;
    audit.write({
      time: new Date(Date.now() - info.durationMs).toISOString(),
      policy: info.origin.policy,
      device: info.deviceId,
      stream: info.name,
      outcome: info.suspended ? 'suspended' : info.paired ? 'completed' : 'dropped',
      reason: info.reason,
      bytesToDevice: info.bytesToDevice,
      bytesFromDevice: info.bytesFromDevice,
      durationMs: info.durationMs,
      remote: info.origin.remote,
    });
  });
}
