import type { ServiceConnectionString } from '../auth/connection-string.js';
import type { Right } from '../protocol/rights.js';
import type { HubTarget } from '../net/hub-client.js';
import { callHubApi } from './hub-api.js';

export interface PolicyInfo {
  readonly name: string;
  readonly rights: readonly Right[];
  readonly connectionString?: string;
}

/** The service side's client for shared access policies. */
export class PolicyClient {
  constructor(
    private readonly credential: ServiceConnectionString,
    private readonly target: HubTarget,
  ) {}

  async add(name: string, rights: readonly Right[]): Promise<PolicyInfo> {
    return (await callHubApi(
      this.credential,
      this.target,
      'PUT',
      `/policies/${encodeURIComponent(name)}`,
      { rights },
    )) as PolicyInfo;
  }

  /** Change a policy's rights and/or give it a new key; returns it with its connection string. */
  async update(
    name: string,
    change: { readonly rights?: readonly Right[]; readonly regenerateKey?: boolean },
  ): Promise<PolicyInfo> {
    return (await callHubApi(
      this.credential,
      this.target,
      'PATCH',
      `/policies/${encodeURIComponent(name)}`,
      change,
    )) as PolicyInfo;
  }

  async list(): Promise<PolicyInfo[]> {
    return (await callHubApi(this.credential, this.target, 'GET', '/policies')) as PolicyInfo[];
  }

  async remove(name: string): Promise<void> {
    await callHubApi(
      this.credential,
      this.target,
      'DELETE',
      `/policies/${encodeURIComponent(name)}`,
    );
  }
}
