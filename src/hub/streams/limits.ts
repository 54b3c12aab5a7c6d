/** Limits that keep one misbehaving client from taking the hub down. All configurable. */
export interface HubLimits {
  /** Streams (waiting or relaying) on the whole hub. Each holds two sockets. */
  readonly maxStreams: number;
  /** Streams (waiting or relaying) to one device. */
  readonly maxStreamsPerDevice: number;
  /** Stream requests a device has not answered yet. */
  readonly maxPendingPerDevice: number;
}

export const defaultLimits: HubLimits = {
  maxStreams: 8000,
  maxStreamsPerDevice: 1000,
  maxPendingPerDevice: 64,
};
