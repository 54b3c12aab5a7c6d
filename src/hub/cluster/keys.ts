/**
 * Every Redis key and channel the cluster uses, in one place (docs/cluster.md lists them).
 * One prefix, so a Redis can be shared with other programs.
 */
const prefix = 'dstream:';

export const keys = {
  /** Hash of registry records: devices, policies, settings (JSON values). */
  table: (name: 'devices' | 'policies' | 'settings'): string => `${prefix}${name}`,
  /** Channel on which every registry write is published. */
  registryChannel: `${prefix}registry`,
  /** A node's lease: its URL, with a short TTL the node keeps refreshing. */
  lease: (nodeId: string): string => `${prefix}node:${nodeId}`,
  leasePrefix: `${prefix}node:`,
  /** A node's own channel: routed stream requests and "drop this device" notices. */
  nodeChannel: (nodeId: string): string => `${prefix}to:${nodeId}`,
  /** Which node holds a device's control connection: "nodeId:epoch". */
  owner: (deviceId: string): string => `${prefix}owner:${deviceId}`,
  /** Counter the epochs of device registrations are drawn from. */
  epoch: `${prefix}epoch`,
  /** Where a suspended stream's halves meet again: a node id, kept for the resume window. */
  meeting: (streamId: string): string => `${prefix}meet:${streamId}`,
  /** What a node holds (devices online, open streams), for the operator API: short-lived JSON. */
  view: (nodeId: string): string => `${prefix}view:${nodeId}`,
  /** Set (30 s) while someone reads the cluster-wide view: nodes keep their views fresh. */
  viewWanted: `${prefix}view-wanted`,
  /** Published by the first cluster-wide read after a quiet spell: every node writes its view. */
  viewWantedChannel: `${prefix}view-wanted-now`,
  /** A node's channel for operator commands (end one of its streams). */
  viewChannel: (nodeId: string): string => `${prefix}view-to:${nodeId}`,
} as const;
