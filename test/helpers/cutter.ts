import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tcpSocketsOf } from './proc.js';

/** A TCP relay in front of a hub (startCutter). */
export interface Cutter {
  readonly port: number;
  /** Where new flows go (a hub's port on 127.0.0.1); flows already made stay where they are. */
  setTarget(port: number): void;
  /** Reset every flow through it; returns how many sockets it reset. */
  cut(): number;
  /** Cut only the flows whose client side is one of `pid`'s sockets (one end's, not both). */
  cutProcess(pid: number): number;
  /** How many flows through it `pid` has open (their client side is one of its sockets). */
  flowsOf(pid: number): number;
  /** Make new flows reach the hub from this loopback address (the laptop changed networks). */
  setSource(address: string): void;
  /** Flows made so far, by the source address the hub saw. */
  readonly madeFrom: Map<string, number>;
  close(): Promise<void>;
}

/**
 * A TCP relay in front of the hub, as a NAT box or a Wi-Fi link is: cut() drops every flow
 * through it at once (both ends see their connections reset), and new ones pass again.
 */
export async function startCutter(): Promise<Cutter> {
  let target = 0;
  let source = '127.0.0.1';
  const madeFrom = new Map<string, number>();
  const flows = new Set<Socket>();
  const server = createServer((inbound) => {
    const outbound = connect({ host: '127.0.0.1', port: target, localAddress: source });
    madeFrom.set(source, (madeFrom.get(source) ?? 0) + 1);
    for (const s of [inbound, outbound]) {
      s.on('error', () => undefined);
      flows.add(s);
      s.once('close', () => flows.delete(s));
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  /** The inbound sides of the flows `pid` opened (matched by its sockets' local ports). */
  const flowsFrom = (pid: number): Socket[] => {
    const ports = new Set(tcpSocketsOf(pid).map((t) => t.port));
    return [...flows].filter(
      (s) => s.remoteAddress === '127.0.0.1' && ports.has(s.remotePort ?? 0),
    );
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    setTarget: (port) => (target = port),
    cut: () => {
      const n = flows.size;
      for (const s of flows) s.resetAndDestroy();
      return n;
    },
    cutProcess: (pid) => {
      const of = flowsFrom(pid);
      for (const s of of) s.resetAndDestroy();
      return of.length;
    },
    flowsOf: (pid) => flowsFrom(pid).length,
    setSource: (address) => (source = address),
    madeFrom,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of flows) s.destroy();
        server.close(() => resolve());
      }),
  };
}
