import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadResumeKey, resumeKeyFile } from '../../src/hub/store/resume-key.js';

describe('the resume-ticket key in the data dir', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const dir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'dstream-rkey-'));
    dirs.push(d);
    return d;
  };

  it('is made once (256 bits, 0600) and read back the same', () => {
    const d = dir();
    const key = loadResumeKey(d);
    expect(key).toHaveLength(32);
    expect(statSync(resumeKeyFile(d)).mode & 0o777).toBe(0o600);
    expect(loadResumeKey(d)).toEqual(key);
  });

  it('a damaged key file is one clear error, not a weaker key', () => {
    const d = dir();
    writeFileSync(resumeKeyFile(d), 'c2hvcnQ=\n');
    expect(() => loadResumeKey(d)).toThrow(
      `cannot use ${resumeKeyFile(d)}: the key is shorter than 256 bits`,
    );
  });
});
