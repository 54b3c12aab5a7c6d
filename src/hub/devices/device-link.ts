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

/**
 * A device's carrier connection that takes stream offers (an agent on the multiplexed
 * carrier): the hub opens the device's half of a stream on it as a substream, and the agent's
 * answer to that `open` is its answer to the stream request. One message each way instead of a
 * stream request, a stream response, the device's own `open` and its answer.
 */
export interface OfferCarrier {
  /**
   * Offer the stream of `message` to the device, with the device's first ticket when the stream
   * will be resumable. `answer` is called once if the device answers (accepted: its half is
   * already with the streaming endpoint); `lost` once if the carrier connection went before it
   * answered. Returns a withdraw: the hub no longer waits.
   */
  offer(
    message: StreamRequestMessage,
    ticket: string | undefined,
    answer: (accepted: boolean, reason?: string) => void,
    lost: () => void,
  ): () => void;
}
