import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

// `dstream hub &` and `dstream hub init` started together on a fresh data dir both find no
// certificate and no resume key. Whatever they make must appear whole and at most once: each
// maker writes its own private copy, then publishes it with one atomic step that fails when
// another maker got there first (link(2) for a file, rename(2) of a directory onto a missing
// or empty one). The loser throws its copy away and reads the winner's.

function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}`);
}

/**
 * Create `file` with `content` unless it exists; never leaves a partial file and never
 * replaces one. Returns true when this call created it.
 */
export function createFileOnce(file: string, content: string, mode: number): boolean {
  const temp = tempName(file);
  writeFileSync(temp, content, { mode, flag: 'wx' });
  try {
    linkSync(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    unlinkSync(temp);
  }
}

/**
 * Create directory `dir` (mode 0700) filled by `fill` unless a non-empty one exists; the
 * directory appears with everything `fill` wrote or not at all. Returns true when this call
 * created it.
 */
export function createDirOnce(dir: string, fill: (temp: string) => void): boolean {
  const temp = tempName(dir);
  mkdirSync(temp, { mode: 0o700 });
  try {
    fill(temp);
    // rename(2) replaces a missing or empty directory atomically and fails on a full one.
    renameSync(temp, dir);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw error;
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
}
