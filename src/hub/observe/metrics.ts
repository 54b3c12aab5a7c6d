import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  isStreamOutcome,
  streamOutcomes as outcomes,
  type AuditLog,
  type StreamOutcome,
} from '../store/audit-log.js';
import type { AuthFailureKind } from '../admission/guard.js';

/** What the metrics read from the running hub at scrape time. */
export interface MetricsSources {
  connectedDevices(): number;
  /** The same devices, by what carries their control channel (dstream's WebSocket, MQTT). */
  devicesByProtocol(): Readonly<Record<string, number>>;
  activeStreams(): number;
  /** Carrier connections of the multiplexed carrier, and the substreams on them. */
  carriers(): { readonly connections: number; readonly substreams: number };
  bytesRelayed(): { readonly toDevice: number; readonly fromDevice: number };
  /** Stream requests sent to devices since start: on their link, or offered on a carrier. */
  deviceRequests(): { readonly control: number; readonly carrier: number };
  /** Cluster mode only. */
  cluster?: (() => ClusterStats) | undefined;
}

/** What a cluster node reports (counts since start). */
export interface ClusterStats {
  readonly redisUp: boolean;
  /** Stream requests passed to the node holding the device, and answered by it. */
  readonly routed: number;
  /** Stream requests whose device's node could not be reached (gone, paused, cut off). */
  readonly unreachable: number;
}

const failureKinds: readonly AuthFailureKind[] = ['device', 'service', 'stream'];

/**
 * A counter that follows running totals read at scrape time, one per label value. It never
 * goes back: a total that dips for an instant (a stream's bytes moving from the live sum to the
 * finished one) would otherwise read as a counter reset to Prometheus.
 */
function totalsCounter<L extends string>(
  name: string,
  help: string,
  label: L,
  registers: Registry[],
  read: () => Record<string, number>,
): void {
  const last = new Map<string, number>();
  new Counter({
    name,
    help,
    labelNames: [label],
    registers,
    collect() {
      for (const [value, total] of Object.entries(read())) {
        const before = last.get(value) ?? 0;
        const labels = { [label]: value } as Record<L, string>;
        this.inc(labels, Math.max(0, total - before));
        last.set(value, Math.max(before, total));
      }
    },
  });
}

/**
 * The hub's Prometheus metrics, in a registry of its own (several hubs may share a process in
 * tests). Gauges and byte counts are read from the hub when scraped, so the hot path pays
 * nothing; events (stream outcomes, setup times, auth failures) are counted as they happen.
 */
export class HubMetrics {
  readonly registry = new Registry();
  readonly #streams: Counter<'outcome'>;
  readonly #requests: Counter<'via'>;
  readonly #setup: Histogram;
  readonly #authFailures: Counter<'kind'>;
  readonly #resumed: Counter;
  readonly #replayed: Counter;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'dstream_connected_devices',
      help: 'Devices with a control connection to this hub.',
      registers,
      collect() {
        this.set(sources.connectedDevices());
      },
    });
    new Gauge({
      name: 'dstream_connected_devices_by_protocol',
      help: 'Devices with a control connection to this hub, by protocol (websocket: dstream agents; mqtt: Azure device SDKs).',
      labelNames: ['protocol'],
      registers,
      collect() {
        for (const [protocol, n] of Object.entries(sources.devicesByProtocol()))
          this.set({ protocol }, n);
      },
    });
    new Gauge({
      name: 'dstream_active_streams',
      help: 'Streams accepted and not yet finished (waiting for their second side or relaying).',
      registers,
      collect() {
        this.set(sources.activeStreams());
      },
    });
    new Gauge({
      name: 'dstream_carrier_connections',
      help: 'Carrier connections (dstream.mux.v1) open, each carrying many streams as substreams.',
      registers,
      collect() {
        this.set(sources.carriers().connections);
      },
    });
    new Gauge({
      name: 'dstream_carrier_substreams',
      help: 'Substreams open on all carrier connections together.',
      registers,
      collect() {
        this.set(sources.carriers().substreams);
      },
    });
    // Counted from the relay's live tallies at scrape time.
    totalsCounter(
      'dstream_relayed_bytes_total',
      'Stream payload bytes relayed, by direction.',
      'direction',
      registers,
      () => {
        const now = sources.bytesRelayed();
        return { to_device: now.toDevice, from_device: now.fromDevice };
      },
    );
    totalsCounter(
      'dstream_device_requests_total',
      "Stream requests sent to devices, by the way they went: control (the device link), or carrier (a substream the hub opened on the device's carrier connection).",
      'via',
      registers,
      () => sources.deviceRequests(),
    );
    const { cluster } = sources;
    if (cluster) {
      new Gauge({
        name: 'dstream_cluster_redis_up',
        help: "1 while this node is connected to the cluster's Redis (and subscribed), else 0.",
        registers,
        collect() {
          this.set(cluster().redisUp ? 1 : 0);
        },
      });
      totalsCounter(
        'dstream_cluster_routed_requests_total',
        'Stream requests for devices on other nodes: answered there, or that node unreachable.',
        'result',
        registers,
        () => {
          const now = cluster();
          return { answered: now.routed, node_unreachable: now.unreachable };
        },
      );
    }
    this.#streams = new Counter({
      name: 'dstream_streams_total',
      help: 'Stream requests by outcome (as in the audit log): completed, rejected, offline, ...',
      labelNames: ['outcome'] as const,
      registers,
    });
    for (const outcome of outcomes) this.#streams.inc({ outcome }, 0);
    this.#requests = new Counter({
      name: 'dstream_stream_requests_total',
      help: "Stream requests (IoT Hub's initiation) by how they came: post, or carrier (a substream of a service's carrier connection).",
      labelNames: ['via'] as const,
      registers,
    });
    for (const via of ['post', 'carrier']) this.#requests.inc({ via }, 0);
    this.#resumed = new Counter({
      name: 'dstream_streams_resumed_total',
      help: 'Resumable streams whose two halves met again after their socket was lost.',
      registers,
    });
    this.#replayed = new Counter({
      name: 'dstream_stream_replayed_bytes_total',
      help: 'Bytes resumed streams sent again that this hub had relayed before their socket was lost.',
      registers,
    });
    this.#setup = new Histogram({
      name: 'dstream_stream_setup_seconds',
      help: "Time from a stream request's arrival to the device's acceptance.",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#authFailures = new Counter({
      name: 'dstream_auth_failures_total',
      help: 'Failed authentications, by credential: device key, service policy, stream token.',
      labelNames: ['kind'] as const,
      registers,
    });
    for (const kind of failureKinds) this.#authFailures.inc({ kind }, 0);
  }

  /**
   * The audit log, counting each record's outcome on its way: every stream attempt yields
   * exactly one audit record, so the outcome counter and the log always agree.
   */
  counting(audit: AuditLog): AuditLog {
    return {
      ...audit,
      write: (record) => {
        if (isStreamOutcome(record.outcome)) this.streamEnded(record.outcome);
        audit.write(record);
      },
    };
  }

  /** A stream request arrived, by IoT Hub's POST or on a service's carrier connection. */
  streamRequested(via: 'post' | 'carrier'): void {
    this.#requests.inc({ via });
  }

  /** One stream request ended (refused, rejected, or relayed and closed). */
  streamEnded(outcome: StreamOutcome): void {
    this.#streams.inc({ outcome });
  }

  /** A device accepted a stream `ms` after the request arrived. */
  streamAccepted(ms: number): void {
    this.#setup.observe(ms / 1000);
  }

  /** A resumable stream's halves were paired again. */
  streamResumed(): void {
    this.#resumed.inc();
  }

  /** A resumed stream's end sends again `bytes` this hub had relayed before the loss. */
  streamReplayed(bytes: number): void {
    this.#replayed.inc(bytes);
  }

  authFailure(kind: AuthFailureKind): void {
    this.#authFailures.inc({ kind });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
