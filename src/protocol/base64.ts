/**
 * True when `text` is base64 in its one canonical form: the standard alphabet, padded to a
 * multiple of four, and re-encoding the decoded bytes gives back exactly `text`. Node's decoder
 * is lenient (it skips junk and stops at the first bad character), so a signature with bytes
 * appended would otherwise verify; keys and signatures are compared as sent, never repaired.
 */
export function isCanonicalBase64(text: string): boolean {
  if (text.length === 0 || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text))
    return false;
  return Buffer.from(text, 'base64').toString('base64') === text;
}
