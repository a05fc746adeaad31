/** The signals that stop the daemon. */
export const SHUTDOWN_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
export type ShutdownSignal = (typeof SHUTDOWN_SIGNALS)[number];

/**
 * Routes SIGTERM/SIGINT: the first one calls `onFirst` (graceful stop), any later one calls
 * `onSecond` (exit at once: the operator, or the orchestrator, is done waiting).
 * Returns a function that removes the handlers.
 */
export function onShutdownSignals(
  onFirst: (signal: ShutdownSignal) => void,
  onSecond: (signal: ShutdownSignal) => void,
): () => void {
  let received = false;
  const handlers = SHUTDOWN_SIGNALS.map((signal) => {
    const handler = () => {
      if (received) {
        onSecond(signal);
        return;
      }
      received = true;
      onFirst(signal);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}
