import { auditEvent, type AuditLog } from '../store/audit-log.js';
import type { StreamEndInfo, StreamEndpoint, StreamResumedInfo } from './stream-endpoint.js';

/**
 * One audit line per accepted stream, when it ends, with its byte counts and duration
 * (refusals are audited where they are decided: stream-initiation.ts); a resumable stream
 * also has one per suspension, per resumption, and one when a suspension gave up. A stream the
 * service cancelled before it was offered has no line.
 */
export function auditStreamEnds(streams: StreamEndpoint, audit: AuditLog): void {
  streams.on('stream-resumed', (info: StreamResumedInfo) =>
    audit.write(
      Object.assign(
        auditEvent({
          policy: undefined,
          device: info.deviceId,
          stream: info.name,
          outcome: 'resumed',
          reason: `resumed (generation ${info.generation})`,
          remote: info.remote,
        }),
        // How long the first half to come back waited for the second.
        { durationMs: info.waitedMs },
      ),
    ),
  );
  streams.on('stream-end', (info: StreamEndInfo) => {
    if (info.cancelled) return;
    audit.write({
      time: new Date(Date.now() - info.durationMs).toISOString(),
      policy: info.origin.policy,
      device: info.deviceId,
      stream: info.name,
      outcome: info.suspended
        ? 'suspended'
        : info.gaveUp
          ? 'gave-up'
          : info.paired
            ? 'completed'
            : 'dropped',
      reason: info.reason,
      bytesToDevice: info.bytesToDevice,
      bytesFromDevice: info.bytesFromDevice,
      durationMs: info.durationMs,
      remote: info.origin.remote,
    });
  });
}
