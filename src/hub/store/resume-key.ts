import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DstreamError, describeError } from '../../errors.js';
import { createFileOnce } from '../../fs/create-once.js';

/** Where a hub keeps the key its resume tickets are signed with. */
export function resumeKeyFile(dataDir: string): string {
  return join(dataDir, 'resume.key');
}

/**
 * The data dir's resume-ticket key (256 bits, base64 in `resume.key`, 0600), made on first
 * use. It outlives the process, so a hub restarted on the same data dir (or a cluster node
 * with a copy of the seed's) verifies the tickets it handed out before.
 */
export function loadResumeKey(dataDir: string): Buffer {
  const file = resumeKeyFile(dataDir);
  try {
    // Another process opening the same fresh data dir may make it at the same time: one wins.
    if (!existsSync(file)) createFileOnce(file, randomBytes(32).toString('base64') + '\n', 0o600);
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length < 32) throw new Error('the key is shorter than 256 bits');
    return key;
  } catch (error) {
    throw new DstreamError('ERR_DATA_DIR', `cannot use ${file}: ${describeError(error)}`, {
      hint: 'Remove the file to make a new key (streams then open before it cannot resume).',
      cause: error,
    });
  }
}
