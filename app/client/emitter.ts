/**
 * A small typed event emitter for the client SDK. No Node `events`: it runs in browsers and in
 * game engines' JavaScript runtimes.
 *
 * - `on` returns its own unsubscribe function; `once` removes the listener before calling it.
 * - Listeners run synchronously, in the order they were added, over a snapshot (a listener that
 *   adds or removes listeners does not change the current emission).
 * - A listener that throws does not stop the others nor the SDK: the error goes to
 *   `onListenerError`, or else is re-thrown on a fresh task (like a browser's EventTarget reports
 *   it as uncaught), so a bug in game code is never silently swallowed.
 */

export type Listener<T> = (payload: T) => void;

export type EmitterOptions<Events extends object> = {
  /** Receives errors thrown by listeners (default: re-thrown asynchronously). */
  onListenerError?: (error: unknown, event: keyof Events) => void;
};

export class TypedEmitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();
  readonly #onListenerError: EmitterOptions<Events>['onListenerError'];

  constructor(options: EmitterOptions<Events> = {}) {
    this.#onListenerError = options.onListenerError;
  }

  /** Adds `listener` for `event`; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Adds a listener that runs at most once; returns a function that removes it. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  /** Removes `listener` (a no-op when it was not added). */
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    set.delete(listener as Listener<never>);
    if (set.size === 0) this.#listeners.delete(event);
  }

  /** Resolves with the next payload of `event` (optionally the next one matching `filter`). */
  next<K extends keyof Events>(event: K, filter: (payload: Events[K]) => boolean = () => true): Promise<Events[K]> {
    return new Promise((resolve) => {
      const off = this.on(event, (payload) => {
        if (!filter(payload)) return;
        off();
        resolve(payload);
      });
    });
  }

  listenerCount(event: keyof Events): number {
    return this.#listeners.get(event)?.size ?? 0;
  }

  /** Calls every listener of `event` with `payload`. */
  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set] as Array<Listener<Events[K]>>) {
      try {
        listener(payload);
      } catch (error) {
        if (this.#onListenerError) {
          this.#onListenerError(error, event);
        } else {
          setTimeout(() => {
            throw error;
          }, 0);
        }
      }
    }
  }
}
