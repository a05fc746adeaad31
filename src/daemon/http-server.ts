import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorFields } from '../logging/error-fields.ts';
import type { Logger } from '../logging/logger.ts';

/** What `/readyz` reports. */
export interface Readiness {
  ready: boolean;
  /** Why not ready, one short phrase each. */
  reasons: string[];
}

/** Options for {@link startHttpServer}. */
export interface HttpServerOptions {
  host: string;
  /** 0 picks a free port (logged and returned). */
  port: number;
  logger: Logger;
  readiness: () => Readiness;
  /** Prometheus text and its content type. */
  metrics: () => Promise<{ body: string; contentType: string }>;
}

/** A listening server. */
export interface HttpServer {
  /** The port actually bound. */
  port: number;
  close(): Promise<void>;
}

/** The listen address is unusable (in use, not local, no permission). */
export class HttpListenError extends Error {
  override readonly name = 'HttpListenError';
}

/**
 * `GET /healthz`: the process is alive (never touches the database, so an outage does not get
 * the pod restarted). `GET /readyz`: 200 when the database answers, else 503 with the reasons.
 * `GET /metrics`: Prometheus text.
 */
export function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const server = createServer((req, res) => {
    handle(req, res, options).catch((error) => {
      options.logger.error(
        { event: 'http.error', url: req.url, ...errorFields(error) },
        'HTTP handler failed',
      );
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  });
  // Probes and scrapers reconnect anyway; idle keep-alive sockets must not delay shutdown.
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new HttpListenError(
          `cannot listen on ${options.host}:${options.port} (--http-host/--http-port): ${error.code ?? error.message}`,
          { cause: error },
        ),
      );
    });
    server.listen(options.port, options.host, () => {
      const port = (server.address() as AddressInfo).port;
      options.logger.info(
        { event: 'http.listening', host: options.host, port },
        `serving /healthz, /readyz and /metrics on http://${options.host}:${port}`,
      );
      resolve({
        port,
        close: () =>
          new Promise((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: HttpServerOptions,
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  switch (path) {
    case '/healthz':
      send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
      return;
    case '/readyz': {
      const readiness = options.readiness();
      send(
        res,
        readiness.ready ? 200 : 503,
        'application/json; charset=utf-8',
        `${JSON.stringify(readiness)}\n`,
      );
      return;
    }
    case '/metrics': {
      const { body, contentType } = await options.metrics();
      send(res, 200, contentType, body);
      return;
    }
    default:
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /healthz, /readyz or /metrics\n');
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
