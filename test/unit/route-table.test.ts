import { describe, expect, it } from 'vitest';
import { RouteTable } from '../../src/hub/http/route-table.js';

describe('the hub route table', () => {
  const table = new RouteTable<string>()
    .add('GET', '/healthz', 'health')
    .add('*', '/devices', 'devices')
    .add('*', '/devices/:deviceId', 'device')
    .add('*', '/twins/:deviceId/modules/:moduleId/streams/:streamName', 'module-stream');

  it('matches literal and :name segments, by method, first added first', () => {
    expect(table.match('GET', ['healthz'])).toEqual({ handler: 'health', params: {} });
    expect(table.match('POST', ['healthz'])).toBeUndefined();
    expect(table.match('DELETE', ['devices'])?.handler).toBe('devices');
    expect(table.match('PUT', ['devices', 'pi 01'])).toEqual({
      handler: 'device',
      params: { deviceId: 'pi 01' },
    });
    expect(table.match('POST', ['twins', 'pi', 'modules', 'm1', 'streams', '22'])).toEqual({
      handler: 'module-stream',
      params: { deviceId: 'pi', moduleId: 'm1', streamName: '22' },
    });
  });

  it('takes an empty segment as a parameter and nothing with another length', () => {
    expect(table.match('GET', ['devices', ''])?.params).toEqual({ deviceId: '' });
    expect(table.match('GET', ['devices', 'a', 'b'])).toBeUndefined();
    expect(table.match('GET', ['twins', 'pi', 'modules', 'm1', 'streams'])).toBeUndefined();
    expect(table.match('GET', [])).toBeUndefined();
  });
});
