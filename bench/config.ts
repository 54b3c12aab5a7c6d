/** Sizes and durations of one run; --quick shrinks them so CI can run the whole suite. */
export interface BenchConfig {
  readonly quick: boolean;
  readonly bulkBytes: number;
  /**
   * Scenario 10's bulk (scenarios/bulk-in-turns.ts): after a first transfer of a quarter of
   * `bulkBytes` each way through fresh processes (cold), `bulkWarmBytes` each way through each
   * carrier unmeasured, then `bulkPairs` pairs of transfers of `bulkPairBytes`, the carriers
   * back to back.
   */
  readonly bulkWarmBytes: number;
  readonly bulkPairs: number;
  readonly bulkPairBytes: number;
  readonly roundTrips: number;
  readonly setups: number;
  readonly rateSeconds: number;
  readonly rateOpeners: number;
  /**
   * Seconds of streams opened at the rate's pace, unmeasured, before scenario 10's setup
   * figures: V8 compiles a process's per-stream paths only after some thousands of streams.
   */
  readonly warmupSeconds: number;
  readonly concurrentStreams: number;
  /** Streams held open at once for the carriers' memory figures (scenario 10). */
  readonly carrierStreams: number;
  /** Devices (each its own agent and proxy) they are split over at least (more if descriptors need). */
  readonly carrierEnds: number;
  readonly busyStreams: number;
  readonly busySeconds: number;
  readonly idleDevices: number;
  readonly loadClients: number;
}

export const fullConfig: BenchConfig = {
  quick: false,
  bulkBytes: 1024 ** 3,
  bulkWarmBytes: 2 * 1024 ** 3,
  bulkPairs: 16,
  bulkPairBytes: 64 * 1024 ** 2,
  roundTrips: 2000,
  setups: 500,
  rateSeconds: 10,
  rateOpeners: 50,
  warmupSeconds: 10,
  concurrentStreams: 5000,
  carrierStreams: 20_000,
  carrierEnds: 1,
  busyStreams: 100,
  busySeconds: 10,
  idleDevices: 15_000,
  loadClients: 4,
};

export const quickConfig: BenchConfig = {
  quick: true,
  bulkBytes: 64 * 1024 ** 2,
  bulkWarmBytes: 64 * 1024 ** 2,
  bulkPairs: 2,
  bulkPairBytes: 16 * 1024 ** 2,
  roundTrips: 200,
  setups: 50,
  rateSeconds: 2,
  rateOpeners: 50,
  warmupSeconds: 1,
  concurrentStreams: 200,
  carrierStreams: 200,
  // Two, so that CI's quick run goes through the split the full run needs here.
  carrierEnds: 2,
  busyStreams: 20,
  busySeconds: 2,
  idleDevices: 400,
  loadClients: 2,
};
