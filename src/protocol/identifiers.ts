/**
 * Device IDs follow IoT Hub's rule: up to 128 characters of ASCII letters, digits and
 * - . : + % _ # * ? ! ( ) , = @ $ '
 * Stream names use the same alphabet, so a port number ("22") or a service name ("ssh") fits.
 */
const idPattern = /^[A-Za-z0-9\-.:+%_#*?!(),=@$']{1,128}$/;

export function isValidDeviceId(value: string): boolean {
  return idPattern.test(value);
}

export function isValidStreamName(value: string): boolean {
  return idPattern.test(value);
}

function describeCharacter(c: string): string {
  if (c === ' ') return 'a space';
  const code = c.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f || code > 0x7e)
    return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  return `'${c}'`;
}

function identifierProblem(what: string, value: string): string | undefined {
  if (value.length === 0) return `${what} is empty`;
  if (value.length > 128) return `${what} is ${value.length} characters long; at most 128 allowed`;
  if (!idPattern.test(value)) {
    // Name the characters that are wrong: a list of the allowed ones ending in `!` reads as if
    // the `!` were the problem when it is the space.
    const bad = [...new Set([...value].filter((c) => !idPattern.test(c)))]
      .map(describeCharacter)
      .join(', ');
    return `${what} '${value}' may not contain ${bad}: use letters, digits and - . : + % _ # * ? ! ( ) , = @ $ '`;
  }
  return undefined;
}

/** Why a device ID is invalid, or undefined if it is valid. */
export function deviceIdProblem(value: string): string | undefined {
  return identifierProblem('device ID', value);
}

/** Why a module ID (IoT Hub's rule, the same as a device ID's) is invalid, or undefined. */
export function moduleIdProblem(value: string): string | undefined {
  return identifierProblem('module ID', value);
}

/** Why a stream name is invalid, or undefined if it is valid. */
export function streamNameProblem(value: string): string | undefined {
  return identifierProblem('stream name', value);
}
