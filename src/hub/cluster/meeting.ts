import { keys } from './keys.js';
import type { Store, StoreScript } from './store.js';

/**
 * Pick the node where a suspended stream's halves meet again, the same for both halves
 * whichever nodes they reach. The first half to ask decides, atomically, and the choice is
 * kept for the resume window; a choice whose node has lost its lease (killed, drained) is
 * made again. The choice: the node named by the ticket (where the stream last ran) while its
 * lease lives, else the node asking. A draining node asks with no URL of its own: it never
 * chooses itself, and gets nothing back when it would have to.
 *
 * KEYS[1] the stream's meeting key; ARGV: lease prefix, ticket node, asking node, its URL
 * ('' when draining), how long to keep the choice (ms). Returns {node, url} or false.
 */
const meet: StoreScript = {
  name: 'resume-meet',
  keys: 1,
  lua: `
local held = redis.call('GET', KEYS[1])
if held then
  local url = redis.call('GET', ARGV[1] .. held)
  if url then return {held, url} end
end
local node = ARGV[2]
local url = redis.call('GET', ARGV[1] .. node)
if not url then
  if ARGV[4] == '' then return false end
  node = ARGV[3]
  url = ARGV[4]
end
redis.call('SET', KEYS[1], node, 'PX', ARGV[5])
return {node, url}`,
};

/** Where a resuming half goes: this node, another node's URL, or nowhere yet (503). */
export type MeetingPlace =
  | { readonly at: 'here' }
  | { readonly at: 'node'; readonly nodeId: string; readonly url: string }
  | { readonly at: 'none' };

/**
 * Ask Redis where the halves of stream `streamId` meet. `ticketNode` is the node the ticket
 * names (or the one whose id prefixes the stream id, for a ticket that names none).
 */
export async function meetingPlace(
  store: Store,
  stream: { readonly streamId: string; readonly ticketNode: string },
  self: { readonly nodeId: string; readonly url: string | undefined },
  keepMs: number,
): Promise<MeetingPlace> {
  const found = await store.run(
    meet,
    [keys.meeting(stream.streamId)],
    [keys.leasePrefix, stream.ticketNode, self.nodeId, self.url ?? '', Math.max(1, keepMs)],
  );
  if (!Array.isArray(found)) return { at: 'none' };
  const [nodeId, url] = found as [string, string];
  return nodeId === self.nodeId && self.url !== undefined
    ? { at: 'here' }
    : { at: 'node', nodeId, url };
}
