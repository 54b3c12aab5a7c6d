import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import mqtt from 'mqtt-packet';
import type { IConnectPacket, IPublishPacket, ISubscribePacket, Packet } from 'mqtt-packet';
import type { Logger } from '../../log/logger.js';
import type { SampledLog } from '../../log/sampled-log.js';
import type { AttachedLink, DeviceLink } from './device-link.js';
import { auditEvent, type AuditLog } from '../store/audit-log.js';
import type { DeviceRecord } from '../store/registry.js';
import type { AuthResult } from '../admission/authenticate.js';
import type { Throttled } from '../admission/guard.js';
import {
  clientIdProblem,
  parseStreamResponseTopic,
  streamRequestFilter,
  streamRequestTopic,
  streamResponseFilter,
  usernameProblem,
} from './mqtt-topics.js';

/** MQTT 3.1.1 CONNACK return codes. */
const connack = {
  accepted: 0,
  badProtocol: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badCredentials: 4,
  notAuthorized: 5,
} as const;

/** What an MQTT device link needs from the hub. */
export interface MqttLinkContext {
  readonly logger: Logger;
  /** Check a device's SAS token (the control WebSocket's check), counted per address. */
  readonly authenticate: (
    socket: Socket,
    token: string | undefined,
    deviceId: string,
  ) => AuthResult<DeviceRecord> | Throttled;
  /** Put the device online; its stream requests then come through the link. */
  readonly attach: (deviceId: string, link: DeviceLink) => AttachedLink;
  /** False while the hub drains: new devices are refused (server unavailable). */
  readonly accepting: () => boolean;
  /** Each refused CONNECT goes here (a line with an empty stream name). */
  readonly audit?: AuditLog | undefined;
  /** The longest packet read, in bytes; bigger ones close the connection. */
  readonly maxPacketBytes: number;
  /** How long a new connection may take to send CONNECT. */
  readonly connectTimeoutMs: number;
  /** Where refusals and abuse an outsider can repeat are logged: once per address per 10 s. */
  readonly noisy?: SampledLog | undefined;
  /**
   * This connection authenticated as `deviceId`: the gateway closes any older connection with
   * that client id (MQTT-3.1.4-2; newest wins, as on the control WebSocket). Returns the
   * release to call when this connection ends.
   */
  readonly claim?: ((deviceId: string, close: (reason: string) => void) => () => void) | undefined;
}

/**
 * Reasons a connection is closed that mean the client misbehaved: logged once (sampled per
 * address), naming the device and the address, so that a flood is visible at info level.
 */
const abusive =
  /stopped reading|over \d+ bytes|packets a second|malformed|QoS 2|before CONNECT|unexpected/;

/**
 * A device sends a handful of packets a second (keep-alives, answers); a client sending
 * thousands is flooding, and each costs the hub a parse and often an answer.
 */
const maxPacketsPerSecond = 1000;

/** How long a device may leave the hub's answers unread before it is closed. */
const stalledWriteMs = 30_000;

/** How a refused MQTT CONNECT is recorded in the audit log. */
type MqttRefusalOutcome = 'unauthorized' | 'disabled' | 'throttled' | 'invalid' | 'unavailable';

/** IoT Hub's longest keep-alive; 0 (none) or more is served as this. */
const maxKeepAliveS = 1177;

/**
 * One device's MQTT connection, spoken as IoT Hub speaks it for device streams: CONNECT with
 * the device id as client id and its SAS token as password, a subscription to the streams
 * topic, stream requests published to it (QoS 0), answers published back. dstream is no
 * broker: nothing a device publishes reaches anyone else. Topics outside device streams
 * (telemetry, twin, methods) are out of scope: their subscriptions are refused (SUBACK 0x80)
 * and their publishes dropped (acknowledged at QoS 1, so the device does not resend); QoS 2
 * closes the connection, as on IoT Hub.
 */
export function serveMqttLink(
  ctx: MqttLinkContext,
  stream: Duplex,
  socket: Socket,
  protocol: 'mqtt' | 'mqtt-ws',
): void {
  const remote = socket.remoteAddress;
  const log = ctx.logger.child({ remote, transport: protocol });
  const parser = mqtt.parser({ protocolVersion: 4 });
  let deviceId: string | undefined;
  let attached: AttachedLink | undefined;
  let subscribed = false;
  let warnedTopic = false;
  let ended = false;
  let keepAliveMs = 0;
  let idle: NodeJS.Timeout | undefined;

  let release: (() => void) | undefined;
  /** A write returned false: nothing more is read from the device until it drains. */
  let blocked = false;
  /** Writes not yet flushed to the socket, and how many of them answer a PINGREQ. */
  let queued = 0;
  let pingsQueued = 0;
  let stallTimer: NodeJS.Timeout | undefined;

  const end = (why: string): void => {
    if (ended) return;
    ended = true;
    clearTimeout(idle);
    clearTimeout(connectTimer);
    clearTimeout(stallTimer);
    release?.();
    // Flush what was written (a CONNACK refusal), then close; never wait on a silent peer.
    // A peer that stopped reading gets no flush: what is queued for it is dropped now.
    if (blocked) stream.destroy();
    else {
      stream.end();
      setTimeout(() => stream.destroy(), 1000).unref();
    }
    attached?.closed({ reason: why });
    if (abusive.test(why)) {
      const fields = { device: deviceId, remote, reason: why };
      if (ctx.noisy)
        ctx.noisy.write('info', 'mqtt-abuse', remote, 'mqtt connection closed', fields);
      else log.info('mqtt connection closed', fields);
    } else if (!attached) log.debug('mqtt connection closed', { device: deviceId, reason: why });
  };

  /**
   * Back-pressure: when the device does not read, stop reading from it (so a flood of PINGREQs
   * makes no more answers), drop answers that would only queue, and close it if it does not
   * catch up. What one connection holds is then bounded by the socket's buffers plus one read.
   */
  const write = (packet: Packet): void => {
    if (ended) return;
    // One keep-alive answer on its way is enough: a flood of PINGREQs read in one chunk would
    // otherwise queue thousands of tiny writes, each costing far more than its two bytes.
    if (packet.cmd === 'pingresp' && (blocked || pingsQueued > 0)) return;
    if (blocked && (stream.writableLength > 64 * 1024 || queued > 1024))
      return end('the device stopped reading');
    queued++;
    if (packet.cmd === 'pingresp') pingsQueued++;
    const isPing = packet.cmd === 'pingresp';
    const flushed = stream.write(mqtt.generate(packet), () => {
      queued--;
      if (isPing) pingsQueued--;
    });
    if (flushed || blocked) return;
    blocked = true;
    stream.pause();
    stallTimer = setTimeout(() => end('the device stopped reading'), stalledWriteMs);
    stream.once('drain', () => {
      blocked = false;
      clearTimeout(stallTimer);
      if (!ended) stream.resume();
    });
  };

  const touch = (): void => {
    if (keepAliveMs === 0) return;
    clearTimeout(idle);
    // MQTT 3.1.1: the server may close after one and a half keep-alive periods of silence.
    idle = setTimeout(() => end('keep-alive expired'), keepAliveMs * 1.5);
  };

  const connectTimer = setTimeout(() => end('no CONNECT in time'), ctx.connectTimeoutMs);

  const refuse = (
    code: number,
    reason: string,
    device?: string,
    outcome: MqttRefusalOutcome = 'invalid',
  ): void => {
    const fields = { device, reason };
    if (ctx.noisy)
      ctx.noisy.write('warn', `mqtt-refused ${outcome}`, remote, 'mqtt device connection refused', {
        device,
        reason,
        remote,
      });
    else log.warn('mqtt device connection refused', fields);
    ctx.audit?.write(
      auditEvent({
        policy: undefined,
        device: device ?? '',
        stream: '',
        outcome,
        reason: `mqtt connect refused: ${reason}`,
        remote,
      }),
    );
    write({ cmd: 'connack', returnCode: code, sessionPresent: false });
    end(reason);
  };

  const onConnect = (packet: IConnectPacket): void => {
    clearTimeout(connectTimer);
    if (packet.protocolVersion !== 4)
      return refuse(
        connack.badProtocol,
        `MQTT protocol level ${packet.protocolVersion ?? '?'}: only 3.1.1 (4) is served`,
      );
    const clientId = packet.clientId;
    const idProblem = clientIdProblem(clientId);
    if (idProblem) return refuse(connack.identifierRejected, idProblem, clientId);
    const nameProblem = usernameProblem(packet.username, clientId);
    if (nameProblem) return refuse(connack.badCredentials, nameProblem, clientId);
    if (!ctx.accepting())
      return refuse(connack.serverUnavailable, 'the hub is shutting down', clientId, 'unavailable');
    const auth = ctx.authenticate(socket, packet.password?.toString('utf8'), clientId);
    if (!auth.ok)
      return refuse(
        auth.status === 429 ? connack.serverUnavailable : connack.notAuthorized,
        auth.message,
        clientId,
        auth.status === 429 ? 'throttled' : auth.status === 403 ? 'disabled' : 'unauthorized',
      );
    deviceId = clientId;
    release = ctx.claim?.(clientId, end);
    keepAliveMs = Math.min(packet.keepalive || maxKeepAliveS, maxKeepAliveS) * 1000;
    touch(); // the clock starts now: a device that goes silent after CONNECT is closed too
    write({ cmd: 'connack', returnCode: connack.accepted, sessionPresent: false });
    log.debug('mqtt device authenticated', { device: deviceId });
  };

  const onSubscribe = (packet: ISubscribePacket): void => {
    const granted = packet.subscriptions.map((s) => {
      if (s.topic === streamRequestFilter || s.topic === streamResponseFilter)
        return Math.min(s.qos, 1);
      const fields = { device: deviceId, topic: s.topic.slice(0, 200) };
      const message = 'mqtt subscription refused: dstream serves device streams only';
      if (ctx.noisy)
        ctx.noisy.write(
          'info',
          'mqtt-subscribe',
          remote,
          message,
          Object.assign({}, fields, { remote }),
        );
      else log.info(message, fields);
      return 0x80;
    });
    write({ cmd: 'suback', messageId: packet.messageId ?? 0, granted });
    // Online once it listens for stream requests: a device that never subscribes could
    // not answer one.
    if (!subscribed && packet.subscriptions.some((s) => s.topic === streamRequestFilter)) {
      subscribed = true;
      attached = ctx.attach(deviceId ?? '', link);
    }
  };

  const onPublish = (packet: IPublishPacket): void => {
    if (packet.qos === 2) return end('QoS 2 publish (IoT Hub does not take QoS 2 either)');
    if (packet.qos === 1) write({ cmd: 'puback', messageId: packet.messageId ?? 0 });
    const answer = parseStreamResponseTopic(packet.topic);
    if (answer) {
      attached?.answer(answer);
      return;
    }
    if (!warnedTopic) {
      warnedTopic = true;
      log.warn('mqtt publish dropped: dstream serves device streams only', {
        device: deviceId,
        topic: packet.topic.slice(0, 200),
      });
    }
  };

  let windowStart = 0;
  let packetsInWindow = 0;
  const onPacket = (packet: Packet): void => {
    if (ended) return;
    const now = Date.now();
    if (now - windowStart >= 1000) {
      windowStart = now;
      packetsInWindow = 0;
    }
    if (++packetsInWindow > maxPacketsPerSecond)
      return end(`more than ${maxPacketsPerSecond} packets a second`);
    touch();
    if (deviceId === undefined) {
      // MQTT 3.1.1: the first packet must be CONNECT.
      if (packet.cmd !== 'connect') return end(`${packet.cmd} before CONNECT`);
      return onConnect(packet);
    }
    switch (packet.cmd) {
      case 'subscribe':
        return onSubscribe(packet);
      case 'unsubscribe':
        return write({ cmd: 'unsuback', messageId: packet.messageId ?? 0, granted: [] });
      case 'publish':
        return onPublish(packet);
      case 'pingreq':
        return write({ cmd: 'pingresp' });
      case 'disconnect':
        return end('the device disconnected');
      case 'puback':
        return; // nothing is sent at QoS 1; ignore
      default:
        return end(`unexpected ${packet.cmd}`);
    }
  };

  const link: DeviceLink = {
    protocol: 'mqtt',
    remote,
    send: (message) =>
      write({
        cmd: 'publish',
        topic: streamRequestTopic(message),
        payload: Buffer.alloc(0),
        qos: 0,
        dup: false,
        retain: false,
      }),
    close: (_code, reason) => end(reason),
  };

  parser.on('packet', onPacket);
  parser.on('error', (error: Error) => end(`malformed MQTT: ${error.message}`));
  stream.on('error', (error: Error) => end(error.message));
  stream.on('close', () => end('connection closed'));
  stream.on('end', () => end('the device closed the connection'));
  stream.on('data', (chunk: Buffer) => {
    if (ended) return;
    const buffered = parser.parse(chunk);
    // The parser waits for a whole packet however long it says it is: bound what it holds.
    if (
      buffered > ctx.maxPacketBytes ||
      (parser as unknown as { packet: { length: number } }).packet.length > ctx.maxPacketBytes
    )
      end(`a packet over ${ctx.maxPacketBytes} bytes`);
  });
}
