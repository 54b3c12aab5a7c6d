/**
 * The operator's credentials, signed in the browser: the key stays in this tab (sessionStorage,
 * gone when the tab closes, or at sign-out) and never travels; the hub sees only SAS tokens,
 * HMAC-SHA256 signatures made here with WebCrypto, in IoT Hub's format.
 */

export interface Credentials {
  /** The hub's name for the token's resource (the connection string's HostName). */
  readonly hostName: string;
  readonly policy: string;
  /** Base64, as in the connection string. */
  readonly key: string;
}

const storageKey = 'dstream.console.credentials';
/** Tokens are made for this long and remade a minute before they expire. */
const tokenLifetimeSeconds = 3600;

/** Read `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`; a problem as text, or credentials. */
export function parseServiceConnectionString(text: string): Credentials | string {
  const fields = new Map<string, string>();
  for (const part of text.trim().split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0)
      return 'that is not a connection string (expected Name=value pairs separated by ;)';
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const hostName = fields.get('HostName');
  const policy = fields.get('SharedAccessKeyName');
  const key = fields.get('SharedAccessKey');
  if (fields.has('DeviceId'))
    return 'that is a device connection string; sign in with a service (policy) connection string';
  if (!hostName || !policy || !key)
    return 'a service connection string needs HostName, SharedAccessKeyName and SharedAccessKey';
  return checkKey({ hostName, policy, key });
}

/** Credentials from a policy name and key typed apart; the host is this page's. */
export function credentialsFromPolicy(policy: string, key: string): Credentials | string {
  if (policy.trim() === '') return 'give the policy name';
  return checkKey({ hostName: location.hostname, policy: policy.trim(), key: key.trim() });
}

function checkKey(credentials: Credentials): Credentials | string {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(credentials.key) || credentials.key.length % 4 !== 0)
    return 'the key is not base64 (copy it whole from `dstream hub init` or `dstream policy add`)';
  return credentials;
}

export function saveCredentials(credentials: Credentials): void {
  sessionStorage.setItem(storageKey, JSON.stringify(credentials));
}

export function loadCredentials(): Credentials | undefined {
  const text = sessionStorage.getItem(storageKey);
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as Partial<Credentials>;
    if (
      typeof value.hostName === 'string' &&
      typeof value.policy === 'string' &&
      typeof value.key === 'string'
    )
      return { hostName: value.hostName, policy: value.policy, key: value.key };
  } catch {
    // not ours
  }
  return undefined;
}

export function forgetCredentials(): void {
  sessionStorage.removeItem(storageKey);
}

function base64ToBytes(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function bytesToBase64(bytes: ArrayBuffer): string {
  let binary = '';
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Signs and caches service tokens for one set of credentials. */
export class TokenSigner {
  #token: { readonly value: string; readonly expiry: number } | undefined;
  #key: Promise<CryptoKey> | undefined;

  constructor(readonly credentials: Credentials) {}

  /** A token valid for about an hour; the same one until a minute before it expires. */
  async token(nowMs = Date.now()): Promise<string> {
    const now = Math.floor(nowMs / 1000);
    if (this.#token && this.#token.expiry - 60 > now) return this.#token.value;
    const expiry = now + tokenLifetimeSeconds;
    this.#key ??= crypto.subtle.importKey(
      'raw',
      base64ToBytes(this.credentials.key),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    );
    const sr = encodeURIComponent(this.credentials.hostName);
    const signature = await crypto.subtle.sign(
      'HMAC',
      await this.#key,
      new TextEncoder().encode(`${sr}\n${expiry}`),
    );
    const value =
      `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(bytesToBase64(signature))}` +
      `&se=${expiry}&skn=${encodeURIComponent(this.credentials.policy)}`;
    this.#token = { value, expiry };
    return value;
  }
}
