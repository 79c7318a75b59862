/**
 * The release drain's view of the websocket gateway (app/release/service.ts `DrainTarget`):
 * selects this instance's sockets of a platform below a version through the connection
 * registry, sends them the `release.drain` frame and closes them with 4000 — using only the
 * gateway's public API.
 */
import type { DrainFrame, DrainSocket, DrainTarget } from '../release/service.js';
import type { ClientPlatform } from '../http/request-meta.js';
import type { Connection, RealtimeGateway } from './gateway.js';

type GatewayView = Pick<RealtimeGateway, 'registry' | 'send' | 'close'>;

const isOpen = (gateway: GatewayView, connection: Connection) =>
  gateway.registry.has(connection) && !connection.closing && connection.ws.readyState === connection.ws.OPEN;

export const createGatewayDrainTarget = (gateway: GatewayView): DrainTarget => ({
  select: (platform, minSupportedVersion): DrainSocket[] =>
    gateway.registry.select({ platform: platform as ClientPlatform, versionBelow: minSupportedVersion }),
  notify: (socket, frame: DrainFrame) => {
    const connection = socket as Connection;
    if (!isOpen(gateway, connection)) return false;
    gateway.send(connection, frame);
    return true;
  },
  close: (socket, code, reason) => {
    const connection = socket as Connection;
    if (!isOpen(gateway, connection)) return false;
    gateway.close(connection, code, reason);
    return true;
  },
});
