import type {
  StreamRequestMessage,
  StreamResponseMessage,
} from '../../protocol/control-messages.js';

/** The device's answer to a stream request. */
export type DeviceAnswer =
  | { readonly kind: 'answered'; readonly response: StreamResponseMessage }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'disconnected' };

/** Told when a device's link starts and ends (cluster presence). */
export interface DevicePresence {
  online(deviceId: string): void;
  offline(deviceId: string): void;
}

/** How a device holds its control channel: dstream's WebSocket, or Azure's MQTT. */
export type DeviceProtocol = 'websocket' | 'mqtt';

/**
 * One device's link, whatever carries it (the control WebSocket, control-websocket.ts; MQTT,
 * mqtt-device-link.ts). DeviceLinks sends stream requests on it and closes it; the carrier
 * reports the device's answers and the link's end through the AttachedLink that attach()
 * returns.
 */
export interface DeviceLink {
  readonly protocol: DeviceProtocol;
  readonly remote: string | undefined;
  send(message: StreamRequestMessage): void;
  /** Close the link; `code` is a WebSocket close code (other carriers just close). */
  close(code: number, reason: string): void;
}

/** What a link's carrier tells DeviceLinks about it. */
export interface AttachedLink {
  /** The device answered a stream request. */
  answer(message: StreamResponseMessage): void;
  /** The link ended (the carrier calls this once, however it ended). */
  closed(detail?: Record<string, unknown>): void;
}
