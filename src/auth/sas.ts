import { createHmac, timingSafeEqual } from 'node:crypto';
import { isCanonicalBase64 } from '../protocol/base64.js';

/**
 * Shared access signatures in IoT Hub's format:
 *   SharedAccessSignature sr=<url-encoded resource>&sig=<url-encoded base64 HMAC>&se=<expiry>[&skn=<policy>]
 * The signature is HMAC-SHA256, keyed with the base64-decoded key, over `sr + "\n" + se`
 * where sr is the URL-encoded resource exactly as it appears in the token.
 */
export interface SasToken {
  /** The resource URI, decoded (e.g. "hub.example.com/devices/pi-01"). */
  readonly resource: string;
  /** The resource exactly as sent (URL-encoded); this is what was signed. */
  readonly encodedResource: string;
  /** Base64 signature, decoded from the URL encoding. */
  readonly signature: string;
  /** Expiry, seconds since the Unix epoch. */
  readonly expiry: number;
  /** Policy name for service tokens; absent for device tokens. */
  readonly keyName: string | undefined;
}

export interface SignSasOptions {
  readonly resource: string;
  /** Base64 shared access key. */
  readonly key: string;
  /** Expiry, seconds since the Unix epoch. */
  readonly expiry: number;
  readonly keyName?: string;
}

const prefix = 'SharedAccessSignature ';

function hmac(key: string, encodedResource: string, expiry: number): Buffer {
  return createHmac('sha256', Buffer.from(key, 'base64'))
    .update(`${encodedResource}\n${expiry}`)
    .digest();
}

/** Build a token string, as IoT Hub's SDKs do. */
export function signSas(options: SignSasOptions): string {
  const sr = encodeURIComponent(options.resource);
  const sig = hmac(options.key, sr, options.expiry).toString('base64');
  let token = `${prefix}sr=${sr}&sig=${encodeURIComponent(sig)}&se=${options.expiry}`;
  if (options.keyName !== undefined) token += `&skn=${encodeURIComponent(options.keyName)}`;
  return token;
}

/** Why a token failed to parse; the hub answers 401 with this text. */
export class SasParseError extends Error {
  override readonly name = 'SasParseError';
}

function decode(value: string, field: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new SasParseError(`the ${field} field of the token is not valid URL encoding`);
  }
}

/**
 * Tokens parsed lately, by their text: a client signs one token and presents it for every
 * request until it nears expiry (dstream's service side does, as Azure's SDKs do), and parsing
 * it again (split, URL decoding, the base64 check) was 4 µs of the hub's work per stream, 12
 * under load. Only tokens that parse are kept, frozen (every caller of the same text shares
 * one); bounded, oldest first out, so a spray of new tokens only churns it.
 */
const parsedTokens = new Map<string, SasToken>();
const maxParsedTokens = 256;

/** Parse a token string; throws SasParseError on anything malformed. */
export function parseSas(text: string): SasToken {
  const known = parsedTokens.get(text);
  if (known) return known;
  const token = Object.freeze(parseFresh(text));
  if (parsedTokens.size >= maxParsedTokens)
    parsedTokens.delete(parsedTokens.keys().next().value as string);
  parsedTokens.set(text, token);
  return token;
}

function parseFresh(text: string): SasToken {
  if (text.length > 4096) throw new SasParseError('the token is too long');
  if (!text.startsWith(prefix))
    throw new SasParseError('expected "SharedAccessSignature sr=...&sig=...&se=..."');
  const fields = new Map<string, string>();
  for (const part of text.slice(prefix.length).split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new SasParseError(`malformed token field '${part.slice(0, 20)}'`);
    const name = part.slice(0, eq);
    if (fields.has(name)) throw new SasParseError(`the token field '${name}' appears twice`);
    fields.set(name, part.slice(eq + 1));
  }
  const sr = fields.get('sr');
  const sig = fields.get('sig');
  const se = fields.get('se');
  if (sr === undefined || sig === undefined || se === undefined)
    throw new SasParseError('the token needs sr, sig and se fields');
  if (!/^\d{1,12}$/.test(se)) throw new SasParseError('the token expiry (se) is not a number');
  const skn = fields.get('skn');
  const resource = decode(sr, 'sr');
  const signature = decode(sig, 'sig');
  if (!isCanonicalBase64(signature))
    throw new SasParseError('the token signature (sig) is not canonical base64');
  return {
    resource,
    encodedResource: sr,
    signature,
    expiry: Number(se),
    keyName: skn === undefined ? undefined : decode(skn, 'skn'),
  };
}

/**
 * The key each token parsed here was checked good with: a hub opening hundreds of streams a
 * second would otherwise compute the same HMAC for each. Keyed by the (frozen, shared) token
 * object, so it lives as long as the token is remembered, and by the key, so a rotated key
 * never finds an old entry; only good signatures are kept (a forger's guesses all take the
 * constant-time path). A token object built elsewhere is checked every time.
 */
const goodWith = new WeakMap<SasToken, string>();

/** True if the token's signature was made with `key`. Constant-time in the signature. */
export function hasValidSignature(token: SasToken, key: string): boolean {
  if (goodWith.get(token) === key) return true;
  const expected = hmac(key, token.encodedResource, token.expiry);
  const given = Buffer.from(token.signature, 'base64');
  const good = given.length === expected.length && timingSafeEqual(given, expected);
  if (good && Object.isFrozen(token)) goodWith.set(token, key);
  return good;
}

/** The seconds-since-epoch expiry for a token valid `ttlSeconds` from now. */
export function expiryIn(ttlSeconds: number, nowMs: number = Date.now()): number {
  return Math.floor(nowMs / 1000) + ttlSeconds;
}
