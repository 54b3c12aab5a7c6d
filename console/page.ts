import type { Api } from './api.js';

/** What every page gets: the API, what the signed-in policy may do, and a way to say things. */
export interface PageContext {
  readonly api: Api;
  /** The policy has RegistryWrite: write actions are shown (the hub checks them anyway). */
  readonly canWrite: boolean;
  /** Where the page draws itself. */
  readonly root: HTMLElement;
  /** Show a short message in the status area (screen readers hear it). */
  notify(message: string, kind?: 'info' | 'error'): void;
  /** Go to another page (`#/devices`, ...). */
  navigate(hash: string): void;
}

/** A page on screen: refreshed on the hub's live events, disposed when the operator leaves. */
export interface Page {
  /** Fetch and redraw what may have changed. */
  refresh(): Promise<void>;
  /** Which live events make this page refresh (`tick`: every few seconds). */
  readonly refreshOn: ReadonlySet<string>;
  dispose?(): void;
}

/** The JSON of GET /hub/devices. */
export interface DeviceActivity {
  readonly deviceId: string;
  readonly status: 'enabled' | 'disabled';
  readonly online: boolean;
  readonly protocol: 'websocket' | 'mqtt' | null;
  readonly node: string | null;
  readonly remote: string | null;
  readonly connectedSince: string | null;
  readonly lastActivityTime: string | null;
  readonly openStreams: number;
  readonly bytesLastHour: number;
}

/** The JSON of GET /streams. */
export interface OpenStream {
  readonly id: string;
  readonly deviceId: string;
  readonly streamName: string;
  readonly policy: string | null;
  readonly remote: string | null;
  readonly node?: string | null;
  readonly state: 'pairing' | 'open' | 'resuming';
  readonly resumable: boolean;
  readonly resumptions: number;
  readonly since: string;
  readonly ageMs: number;
  readonly bytesToDevice: number;
  readonly bytesFromDevice: number;
}

/** One record of GET /audit. */
export interface AuditRecord {
  readonly seq: number;
  readonly time: string;
  readonly policy: string | null;
  readonly device: string;
  readonly stream: string;
  readonly outcome: string;
  readonly reason: string | null;
  readonly bytesToDevice: number;
  readonly bytesFromDevice: number;
  readonly durationMs: number;
  readonly remote: string | null;
}

/** How a device is connected, in words. */
export function connectionText(device: DeviceActivity): string {
  if (device.status === 'disabled') return 'disabled';
  if (!device.online) return 'offline';
  if (device.protocol === 'mqtt') return 'online (MQTT)';
  if (device.protocol === 'websocket') return 'online (control WebSocket)';
  return 'online';
}

/** A message for an error a page met. */
export function problemText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
