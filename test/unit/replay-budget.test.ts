import { describe, expect, it } from 'vitest';
import { ReplayBudget } from '../../src/stream/replay-budget.js';

describe('ReplayBudget: what all of a process resumable streams keep for replay', () => {
  it('is full at its limit, wakes every waiting stream once there is room, and only then', () => {
    const budget = new ReplayBudget(100);
    budget.take(60);
    expect(budget.full).toBe(false);
    budget.take(50);
    expect([budget.used, budget.full]).toEqual([110, true]);
    const woken: string[] = [];
    budget.wait(() => woken.push('a'));
    budget.wait(() => woken.push('b'));
    const c = (): number => woken.push('c');
    budget.wait(c);
    budget.forget(c);
    // Still at the limit: nobody is woken.
    budget.give(10);
    expect([budget.used, woken]).toEqual([100, []]);
    budget.give(1);
    expect([budget.used, woken]).toEqual([99, ['a', 'b']]);
    // Woken once: waiting again is up to each stream.
    budget.give(50);
    expect(woken).toEqual(['a', 'b']);
  });

  it('never counts below zero, and refuses a limit that is not a positive whole number', () => {
    const budget = new ReplayBudget(10);
    budget.give(5);
    expect(budget.used).toBe(0);
    expect(() => new ReplayBudget(0)).toThrow(RangeError);
    expect(() => new ReplayBudget(1.5)).toThrow(RangeError);
  });
});
