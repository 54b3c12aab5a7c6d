import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DstreamError, describeError } from '../errors.js';

/** One saved credential: a connection string and, for hubs signed by a private CA, its PEM file. */
export interface Profile {
  readonly connectionString: string;
  readonly ca?: string | undefined;
}

interface StoreShape {
  profiles: Record<string, Profile>;
}

/** The file name inside the profiles directory. */
export const profilesFile = 'profiles.json';

/** The profile used when none is named. */
export const defaultProfileName = 'default';

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Why a profile name is unusable, or undefined when it is fine. */
export function profileNameProblem(name: string): string | undefined {
  return namePattern.test(name)
    ? undefined
    : `profile name '${name.slice(0, 80)}' is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`;
}

/**
 * Saved connection strings, in `<dir>/profiles.json`. The directory is 0700 and the file 0600:
 * it holds keys. Reading is a plain read of the file: no `conf`, whose modules (a schema
 * validator among them) are a fifth of a command's start-up, and `dstream connect` starts once
 * per ssh run. Saving goes through `conf`, loaded then: it writes atomically (temp file +
 * rename), so a crash mid-save leaves the old file, and every write re-creates the file with
 * mode 0600.
 */
export class ProfileStore {
  readonly path: string;

  constructor(private readonly dir: string) {
    this.path = join(dir, profilesFile);
  }

  /** Every profile, by name (none when nothing was ever saved). */
  all(): Readonly<Record<string, Profile>> {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw this.#unreadable(error);
    }
    let stored: unknown;
    try {
      stored = JSON.parse(text);
    } catch (error) {
      throw this.#unreadable(error);
    }
    const profiles =
      typeof stored === 'object' && stored !== null
        ? (stored as Partial<StoreShape>).profiles
        : undefined;
    return typeof profiles === 'object' && profiles !== null ? profiles : {};
  }

  get(name: string): Profile | undefined {
    const all = this.all();
    return Object.hasOwn(all, name) ? all[name] : undefined;
  }

  /** Save (or replace) a profile. */
  async set(name: string, profile: Profile): Promise<void> {
    await this.#write({ ...this.all(), [name]: profile });
  }

  /** Remove a profile; false if there was none of that name. */
  async remove(name: string): Promise<boolean> {
    const rest = { ...this.all() };
    if (!Object.hasOwn(rest, name)) return false;
    delete rest[name];
    await this.#write(rest);
    return true;
  }

  #unreadable(error: unknown): DstreamError {
    return new DstreamError(
      'ERR_PROFILE_STORE',
      `cannot read the profiles in ${this.dir}: ${describeError(error)}`,
      { hint: 'Fix or remove the file, then run `dstream login` again.', cause: error },
    );
  }

  async #write(profiles: Record<string, Profile>): Promise<void> {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const { default: Conf } = await import('conf');
      const conf = new Conf<StoreShape>({
        cwd: this.dir,
        configName: 'profiles',
        projectSuffix: '',
        configFileMode: 0o600,
        defaults: { profiles: {} },
        // Profile names may contain dots; they are keys, not paths.
        accessPropertiesByDotNotation: false,
      });
      conf.set('profiles', profiles);
      // A file created by an older version or by hand may be wider than 0600.
      chmodSync(this.path, 0o600);
    } catch (error) {
      throw new DstreamError(
        'ERR_PROFILE_STORE',
        `cannot save the profiles to ${this.path}: ${describeError(error)}`,
        { cause: error },
      );
    }
  }
}
