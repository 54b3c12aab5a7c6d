import { connect as connectTcp } from 'node:net';
import { SharedAccessSignature, anHourFromNow } from 'azure-iot-common';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import WebSocket, { createWebSocketStream } from 'ws';

/**
 * A device as Azure's device SDKs build one, speaking IoT Hub's MQTT stream protocol with an
 * ordinary MQTT client (mqtt from npm): client id = device id, username
 * `<host>/<deviceId>/?api-version=...`, password = a device SAS token made by Microsoft's
 * azure-iot-common. It subscribes to stream requests, accepts those naming one of its
 * targets (answering on the response topic), and pipes each accepted stream to a local TCP
 * port, opening the stream socket as Azure's C device sample does (offering subprotocol
 * "MQTT"). Azure's stream sockets carry raw bytes and no half-close: a stream ends when
 * either side closes, so the local service's close ends it here.
 */
export interface MqttDevice {
  readonly client: MqttClient;
  /** Stream requests seen, by name, in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

export interface MqttDeviceOptions {
  /** mqtts://host:port, or wss://host:port/$iothub/websocket. */
  readonly url: string;
  /** The HostName of the device's connection string. */
  readonly hostName: string;
  readonly deviceId: string;
  readonly key: string;
  /** PEM the device trusts the hub by. */
  readonly ca: string;
  /** Stream name -> the local port it goes to; other names are rejected. */
  readonly targets: Readonly<Record<string, number>>;
  /** Override the SAS password (bad-credential tests). */
  readonly password?: string;
  readonly username?: string;
  readonly clientId?: string;
}

/** The password an Azure device SDK sends: a SAS token for `<host>/devices/<id>`. */
export function deviceSasToken(hostName: string, deviceId: string, key: string): string {
  return SharedAccessSignature.create(
    encodeURIComponent(`${hostName}/devices/${deviceId}`),
    '',
    key,
    anHourFromNow(),
  ).toString();
}

export function mqttOptions(o: MqttDeviceOptions): IClientOptions {
  return {
    clientId: o.clientId ?? o.deviceId,
    username: o.username ?? `${o.hostName}/${o.deviceId}/?api-version=2021-04-12`,
    password: o.password ?? deviceSasToken(o.hostName, o.deviceId, o.key),
    protocolVersion: 4,
    clean: false,
    keepalive: 30,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ca: o.ca,
    rejectUnauthorized: true,
    // MQTT over WebSockets: the subprotocol is "mqtt".
    wsOptions: { ca: o.ca },
  };
}

export async function startMqttDevice(o: MqttDeviceOptions): Promise<MqttDevice> {
  const client = await connectAsync(o.url, mqttOptions(o));
  client.on('error', () => undefined);
  const requests: string[] = [];
  const sockets = new Set<{ destroy(): void }>();
  client.on('message', (topic) => {
    const m = /^\$iothub\/streams\/POST\/([^/]+)\/\?(.*)$/.exec(topic);
    if (!m) return;
    const name = m[1] ?? '';
    const params = new URLSearchParams(m[2]);
    const rid = params.get('$rid') ?? '';
    requests.push(name);
    const targetPort = o.targets[name];
    if (targetPort === undefined) {
      void client.publishAsync(`$iothub/streams/res/400/?$rid=${rid}`, '', { qos: 1 });
      return;
    }
    void client.publishAsync(`$iothub/streams/res/200/?$rid=${rid}`, '', { qos: 1 });
    const ws = new WebSocket(params.get('$url') ?? '', ['MQTT'], {
      headers: { Authorization: `Bearer ${params.get('$auth') ?? ''}` },
      ca: o.ca,
    });
    ws.on('error', () => undefined);
    ws.on('open', () => {
      const duplex = createWebSocketStream(ws);
      duplex.on('error', () => undefined);
      const local = connectTcp({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
      local.on('error', () => undefined);
      sockets.add(local);
      duplex.pipe(local).pipe(duplex);
    });
    sockets.add({ destroy: () => ws.terminate() });
  });
  const granted = await client.subscribeAsync('$iothub/streams/POST/#', { qos: 1 });
  if (granted[0]?.qos !== 1)
    throw new Error(`subscription not granted: ${JSON.stringify(granted)}`);
  return {
    client,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await client.endAsync(true);
    },
  };
}
