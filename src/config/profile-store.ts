import Conf from 'conf';
import { chmodSync, mkdirSync } from 'node:fs';
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
 * Saved connection strings, in `<dir>/profiles.json` (conf). The directory is 0700 and the file
 * 0600: it holds keys. conf writes atomically (temp file + rename), so a crash mid-save leaves
 * the old file, and every write re-creates the file with mode 0600.
 */
export class ProfileStore {
  readonly path: string;
  readonly #conf: Conf<StoreShape>;

  constructor(dir: string) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      this.#conf = new Conf<StoreShape>({
        cwd: dir,
        configName: 'profiles',
        projectSuffix: '',
        configFileMode: 0o600,
        defaults: { profiles: {} },
        // Profile names may contain dots; they are keys, not paths.
        accessPropertiesByDotNotation: false,
      });
    } catch (error) {
      throw new DstreamError(
        'ERR_PROFILE_STORE',
        `cannot read the profiles in ${dir}: ${describeError(error)}`,
        { hint: 'Fix or remove the file, then run `dstream login` again.', cause: error },
      );
    }
    this.path = this.#conf.path;
  }

  /** Every profile, by name. */
  all(): Readonly<Record<string, Profile>> {
    const profiles = this.#conf.get('profiles');
    return typeof profiles === 'object' && profiles !== null ? profiles : {};
  }

  get(name: string): Profile | undefined {
    return Object.hasOwn(this.all(), name) ? this.all()[name] : undefined;
  }

  /** Save (or replace) a profile. */
  set(name: string, profile: Profile): void {
    this.#write({ ...this.all(), [name]: profile });
  }

  /** Remove a profile; false if there was none of that name. */
  remove(name: string): boolean {
    if (!this.get(name)) return false;
    const rest = { ...this.all() };
    delete rest[name];
    this.#write(rest);
    return true;
  }

  #write(profiles: Record<string, Profile>): void {
    try {
      this.#conf.set('profiles', profiles);
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
