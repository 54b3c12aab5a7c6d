import type { ServiceConnectionString } from '../auth/connection-string.js';
import { DstreamError } from '../errors.js';
import { hubRequest, type HubTarget } from '../net/hub-client.js';
import { apiVersion } from '../protocol/constants.js';
import { serviceToken } from './credentials.js';
import { errorFromResponse } from './hub-errors.js';

/** A device as the registry API returns it. */
export interface DeviceInfo {
  readonly deviceId: string;
  readonly status: 'enabled' | 'disabled';
  readonly connectionState: 'Connected' | 'Disconnected';
  readonly createdTime: string;
  readonly lastActivityTime: string | null;
  readonly connectionString?: string;
  readonly authentication?: { readonly symmetricKey: { readonly primaryKey: string } };
}

/** The service side's client for the hub's registry REST API. */
export class RegistryClient {
  constructor(
    private readonly credential: ServiceConnectionString,
    private readonly target: HubTarget,
  ) {}

  async #call(method: string, deviceId: string | undefined, body?: unknown): Promise<unknown> {
    const path = `/devices${deviceId === undefined ? '' : '/' + encodeURIComponent(deviceId)}?api-version=${apiVersion}`;
    const res = await hubRequest(this.target, {
      method,
      path,
      headers: { authorization: serviceToken(this.credential) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status >= 300) throw errorFromResponse(res);
    if (res.status === 204 || res.body === '') return undefined;
    try {
      return JSON.parse(res.body);
    } catch (error) {
      throw new DstreamError('ERR_HUB_RESPONSE', 'the hub answered with invalid JSON', {
        cause: error,
      });
    }
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
}
