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

/** Why a device ID is invalid, or undefined if it is valid. */
export function deviceIdProblem(value: string): string | undefined {
  if (value.length === 0) return 'device ID is empty';
  if (value.length > 128)
    return `device ID is ${value.length} characters long; at most 128 allowed`;
  if (!idPattern.test(value))
    return `device ID '${value}' has characters outside letters, digits and -.:+%_#*?!(),=@$'`;
  return undefined;
}

/** Why a stream name is invalid, or undefined if it is valid. */
export function streamNameProblem(value: string): string | undefined {
  if (value.length === 0) return 'stream name is empty';
  if (value.length > 128)
    return `stream name is ${value.length} characters long; at most 128 allowed`;
  if (!idPattern.test(value))
    return `stream name '${value}' has characters outside letters, digits and -.:+%_#*?!(),=@$'`;
  return undefined;
}
