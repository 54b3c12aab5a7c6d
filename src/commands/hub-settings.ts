/** `dstream hub`'s settings, from its flags and the data dir (commands/hub.ts). */
export interface HubSettings {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly publicUrl: URL | undefined;
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  readonly insecureNoTls: boolean;
  /** Cluster mode: the shared Redis. */
  readonly redisUrl: URL | undefined;
  /** Cluster mode: where clients reach this node itself. */
  readonly nodeUrl: URL | undefined;
  /**
   * Azure's MQTT device protocol: where its TLS listener binds, and whether the user asked
   * for it (optional: the default, skipped with a warning when the port is taken); undefined
   * with --no-mqtt.
   */
  readonly mqttListen:
    { readonly host: string; readonly port: number; readonly optional: boolean } | undefined;
}
