import type { ServiceConnectionString } from '../auth/connection-string.js';
import type { HubTarget } from '../net/hub-client.js';
import { callHubApi } from './hub-api.js';

/** A device as the registry API returns it. */
export interface DeviceInfo {
  readonly deviceId: string;
  readonly status: 'enabled' | 'disabled';
  readonly connectionState: 'Connected' | 'Disconnected';
  readonly createdTime: string;
  readonly lastActivityTime: string | null;
  readonly connectionString?: string;
  readonly secondaryConnectionString?: string;
  readonly authentication?: {
    readonly symmetricKey: { readonly primaryKey: string; readonly secondaryKey: string };
  };
}

/** The service side's client for the hub's registry REST API. */
export class RegistryClient {
  constructor(
    private readonly credential: ServiceConnectionString,
    private readonly target: HubTarget,
  ) {}

  #call(
    method: string,
    deviceId: string | undefined,
    body?: unknown,
    action?: string,
  ): Promise<unknown> {
    const path = `/devices${deviceId === undefined ? '' : '/' + encodeURIComponent(deviceId)}${action ? '/' + action : ''}`;
    return callHubApi(this.credential, this.target, method, path, body);
  }

  async add(deviceId: string): Promise<DeviceInfo> {
    return (await this.#call('PUT', deviceId, {})) as DeviceInfo;
  }

  async list(): Promise<DeviceInfo[]> {
    return (await this.#call('GET', undefined)) as DeviceInfo[];
  }

  async show(deviceId: string): Promise<DeviceInfo> {
    return (await this.#call('GET', deviceId)) as DeviceInfo;
  }

  async remove(deviceId: string): Promise<void> {
    await this.#call('DELETE', deviceId);
  }

  async setStatus(deviceId: string, status: 'enabled' | 'disabled'): Promise<DeviceInfo> {
    return (await this.#call('PATCH', deviceId, { status })) as DeviceInfo;
  }

  /** Replace the primary or secondary key; the old one stops working at once. */
  async regenerateKey(deviceId: string, key: 'primary' | 'secondary'): Promise<DeviceInfo> {
    return (await this.#call('POST', deviceId, { key }, 'regenerate-key')) as DeviceInfo;
  }
}
