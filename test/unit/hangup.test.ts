import { describe, expect, it } from 'vitest';
import { abortError, abortSignalOf, Hangup, type AbortLike } from '../../src/runtime/hangup.js';

describe('Hangup', () => {
  it('runs each listener once, in the order added, on the first hang-up only', () => {
    const hangup = new Hangup();
    const heard: string[] = [];
    const a = (): void => void heard.push('a');
    const b = (): void => void heard.push('b');
    const removed = (): void => void heard.push('removed');
    hangup.addEventListener('abort', a);
    hangup.addEventListener('abort', removed);
    hangup.addEventListener('abort', b);
    hangup.addEventListener('abort', a); // added twice: heard once, as an AbortSignal does
    hangup.removeEventListener('abort', removed);
    expect(hangup.aborted).toBe(false);
    hangup.hangUp();
    hangup.hangUp();
    expect(hangup.aborted).toBe(true);
    expect(heard).toEqual(['a', 'b']);
  });

  it('does not call a listener added after the hang-up, as an AbortSignal does not', () => {
    const hangup = new Hangup();
    hangup.hangUp();
    let called = false;
    hangup.addEventListener('abort', () => (called = true));
    hangup.hangUp();
    expect(called).toBe(false);
  });

  it('is taken where an AbortSignal is, and an AbortSignal where it is', () => {
    const waits = (signal: AbortLike): Promise<string> =>
      new Promise((resolve) => {
        if (signal.aborted) return resolve('already');
        signal.addEventListener('abort', () => resolve('aborted'));
      });
    const hangup = new Hangup();
    const controller = new AbortController();
    const both = Promise.all([waits(hangup), waits(controller.signal)]);
    hangup.hangUp();
    controller.abort();
    return expect(both).resolves.toEqual(['aborted', 'aborted']);
  });
});

describe('abortSignalOf', () => {
  it('passes an AbortSignal through, and makes one that follows a Hangup, aborted or not yet', () => {
    const controller = new AbortController();
    expect(abortSignalOf(controller.signal)).toBe(controller.signal);
    const hangup = new Hangup();
    const signal = abortSignalOf(hangup);
    expect(signal).toBeInstanceOf(AbortSignal);
    expect(signal.aborted).toBe(false);
    hangup.hangUp();
    expect(signal.aborted).toBe(true);
    const late = new Hangup();
    late.hangUp();
    expect(abortSignalOf(late).aborted).toBe(true);
  });

  it("abortError is what an aborted signal's throwIfAborted throws", () => {
    const controller = new AbortController();
    controller.abort();
    let thrown: unknown;
    try {
      controller.signal.throwIfAborted();
    } catch (error) {
      thrown = error;
    }
    const ours = abortError();
    expect(ours).toBeInstanceOf(DOMException);
    expect({ name: ours.name, message: ours.message }).toEqual({
      name: (thrown as DOMException).name,
      message: (thrown as DOMException).message,
    });
  });
});
