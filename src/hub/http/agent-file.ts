import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sendError, sendJson } from '../base/http-util.js';

/** The single-file agent, as `npm run build` bundles it (scripts/bundle-agent.mjs). */
export const agentFileName = 'dstream-agent.mjs';

const builtFile = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'dist',
  'device',
  agentFileName,
);

interface AgentFile {
  readonly body: Buffer;
  readonly sha256: string;
}

/**
 * The agent file the hub hands to devices: read once, on the first request (a hub started
 * from a tree that was never bundled answers 404 with the hint, and serves everything else).
 */
export class AgentFileServer {
  #file: AgentFile | undefined;

  /**
   * `pin`: for a hub with a self-signed certificate, what curl pins (`--pinnedpubkey`): the
   * SHA-256 of the certificate's public key, base64.
   */
  constructor(
    private readonly path: string = builtFile,
    readonly pin: string | undefined = undefined,
  ) {}

  /** The file, or undefined if it was not built. */
  file(): AgentFile | undefined {
    if (this.#file) return this.#file;
    let body: Buffer;
    try {
      body = readFileSync(this.path);
    } catch {
      return undefined;
    }
    this.#file = { body, sha256: createHash('sha256').update(body).digest('hex') };
    return this.#file;
  }

  /**
   * GET /agent/dstream-agent.mjs (the file, its SHA-256 in `x-dstream-sha256` and
   * `repr-digest`), GET /agent/dstream-agent.mjs.sha256 (`sha256sum -c` input), and
   * GET /agent/install (JSON: path, sha256, pin). No credentials: the file holds no secret.
   */
  serve(req: IncomingMessage, res: ServerResponse, name: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendError(res, 405, 'MethodNotAllowed', 'the agent file is read with GET');
    const file = this.file();
    if (!file)
      return sendError(
        res,
        404,
        'NotFound',
        'this hub has no agent file: build it with `npm run build` where the hub runs',
      );
    if (name === 'install')
      return sendJson(res, 200, {
        path: `/agent/${agentFileName}`,
        sha256: file.sha256,
        pinnedPubKey: this.pin === undefined ? null : `sha256//${this.pin}`,
        bytes: file.body.length,
      });
    if (name === `${agentFileName}.sha256`) {
      const text = `${file.sha256}  ${agentFileName}\n`;
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': String(Buffer.byteLength(text)),
        'cache-control': 'no-cache',
      });
      res.end(req.method === 'HEAD' ? undefined : text);
      return;
    }
    if (name !== agentFileName) return sendError(res, 404, 'NotFound', 'no such agent file');
    res.writeHead(200, {
      'content-type': 'text/javascript; charset=utf-8',
      'content-length': String(file.body.length),
      'cache-control': 'no-cache',
      etag: `"${file.sha256}"`,
      'x-dstream-sha256': file.sha256,
      'repr-digest': `sha-256=:${Buffer.from(file.sha256, 'hex').toString('base64')}:`,
    });
    res.end(req.method === 'HEAD' ? undefined : file.body);
  }
}

/** What curl's --pinnedpubkey takes for a certificate: base64 SHA-256 of its public key (SPKI). */
export function publicKeyPin(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}
