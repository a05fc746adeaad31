import { connect as connectSocket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/** Every {@link TrackedClient} not yet ended, so that a stopping process can close them all. */
const openClients = new Set<TrackedClient>();

/** The protocol's CancelRequest code (1234 << 16 | 5678). */
const CANCEL_REQUEST_CODE = 80_877_102;
/** Bound on delivering one cancel request. */
const CANCEL_BOUND_MS = 1_000;

/**
 * The `pg.Client` of every connection this project opens (directly, through its pools, and for
 * node-pg-migrate), with two additions:
 *
 * - A failed connect closes its socket. pg leaves it open when the failure is raised on the
 *   client's side during authentication (a server that asks for a SCRAM password when none was
 *   given: "client password must be a string"); the server then waits for an answer for its
 *   `authentication_timeout`, and the open socket keeps the process alive that long.
 * - It is registered until it ends, so {@link abortOpenConnections} can cancel and close every
 *   connection of a process that was asked to stop.
 */
export class TrackedClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    openClients.add(this);
    this.once('end', () => openClients.delete(this));
  }

  override connect(): Promise<pg.Client>;
  override connect(callback: (err: Error | null, client?: pg.Client) => void): void;
  override connect(
    callback?: (err: Error | null, client?: pg.Client) => void,
  ): Promise<pg.Client> | undefined {
    if (callback) {
      super.connect(((error: Error | null) => {
        if (error) this.#closeFailed();
        callback(error, error ? undefined : this);
      }) as never);
      return undefined;
    }
    return super.connect().catch((error: unknown) => {
      this.#closeFailed();
      throw error;
    });
  }

  #closeFailed(): void {
    openClients.delete(this);
    this.connection.stream.destroy();
  }
}

/**
 * Cancels whatever each open connection is running (PostgreSQL's cancel request, what psql's
 * Ctrl-C sends: the statement stops and its transaction rolls back) and closes the connections,
 * so their sessions end and release their locks, session advisory locks included. Resolves
 * within about `boundMs` whatever the server does; sockets still open then are destroyed.
 */
export async function abortOpenConnections(boundMs = 3_000): Promise<void> {
  const clients = [...openClients];
  await Promise.race([
    Promise.allSettled(
      clients.map(async (client) => {
        await sendCancelRequest(client);
        await client.end();
      }),
    ),
    sleep(boundMs, undefined, { ref: false }),
  ]);
  for (const client of clients) client.connection.stream.destroy();
}

/** Sends a CancelRequest for `client`'s backend on a connection of its own; never throws. */
function sendCancelRequest(client: TrackedClient): Promise<void> {
  const { processID, secretKey } = client as unknown as { processID?: number; secretKey?: number };
  if (typeof processID !== 'number' || typeof secretKey !== 'number') return Promise.resolve();
  return new Promise((resolve) => {
    const socket = client.host?.startsWith('/')
      ? connectSocket(`${client.host}/.s.PGSQL.${client.port}`)
      : connectSocket(client.port, client.host);
    socket.setTimeout(CANCEL_BOUND_MS, () => socket.destroy());
    socket.once('connect', () => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
      packet.writeInt32BE(processID, 8);
      packet.writeInt32BE(secretKey, 12);
      // The server reads the packet, signals the backend and closes this connection.
      socket.end(packet);
    });
    socket.on('error', () => {});
    socket.once('close', () => resolve());
  });
}
