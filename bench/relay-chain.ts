import { fileURLToPath } from 'node:url';
import { spawnChild, type Child } from './child.js';
import { createSelfSignedCertificate } from '../src/tls/self-signed.js';
import { freePort, waitListening } from './scenarios/compare.js';

/**
 * The floor under a three-process tunnel on this machine: three plain Node TCP relays in a row
 * (`plain-relay.ts`: no TLS, no protocol, no checks), where the proxy, the hub and the agent
 * stand. Each new connection is a new connection at every hop, and crosses the same processes
 * (and so the same wake-ups) as a stream through dstream.
 */
export interface RelayChain {
  /** The first relay's port: connections through it reach `target`. */
  readonly port: number;
  /** The processes a connection crosses, from the client's side to the target's. */
  readonly pids: readonly number[];
  stop(): Promise<void>;
}

const relayScript = fileURLToPath(new URL('./plain-relay.js', import.meta.url));

/** `hops` plain relays, the last one forwarding to 127.0.0.1:`target`. */
export async function startRelayChain(target: number, hops = 3): Promise<RelayChain> {
  const children: Child[] = [];
  const stop = async (): Promise<void> => {
    for (const c of children.reverse()) await c.stop();
  };
  try {
    let next = target;
    for (let i = 0; i < hops; i++) {
      const port = await freePort();
      const relay = spawnChild(process.execPath, [relayScript, String(port), String(next)]);
      children.push(relay);
      await waitListening(port, relay, 'a plain relay');
      next = port;
    }
    return { port: next, pids: children.map((c) => c.pid).reverse(), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

const leanScripts = {
  frames: fileURLToPath(new URL('./lean-relay.js', import.meta.url)),
  mux: fileURLToPath(new URL('./mux-relay.js', import.meta.url)),
} as const;

/**
 * The floor under the multiplexed carrier's shape (`lean-relay.ts`): a front where the proxy
 * stands and a back where the agent stands, both joined by a long-lived verified TLS connection
 * of their own to a middle where the hub stands, every stream a few frames on them; returns the
 * front's port, whose connections reach 127.0.0.1:`target`.
 */
export async function startLeanChain(
  target: number,
  /** `frames`: lean-relay.ts's bare frames on TLS; `mux`: mux-relay.ts's MuxSession on a TLS WebSocket. */
  layer: keyof typeof leanScripts = 'frames',
): Promise<RelayChain> {
  const children: Child[] = [];
  const stop = async (): Promise<void> => {
    for (const c of children.reverse()) await c.stop();
  };
  try {
    const { key, cert } = await createSelfSignedCertificate('lean-relay', ['127.0.0.1']);
    const start = (args: readonly string[], env: Record<string, string>): Child => {
      const child = spawnChild(process.execPath, [leanScripts[layer], ...args], env);
      children.push(child);
      return child;
    };
    const middle = start(['middle'], { LEAN_KEY: key, LEAN_CERT: cert });
    const middlePort = (await middle.waitFor(/listening on (\d+)/))[1] ?? '';
    const back = start(['back', middlePort, String(target)], { LEAN_CA: cert });
    await middle.waitFor(/back connected/);
    const port = await freePort();
    const front = start(['front', String(port), middlePort], { LEAN_CA: cert });
    await middle.waitFor(/front connected/);
    await waitListening(port, front, 'the lean relay chain');
    return { port, pids: [front.pid, middle.pid, back.pid], stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
