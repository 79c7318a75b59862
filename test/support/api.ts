/**
 * A small HTTP client for tests: JSON in and out, through the real server.
 */
import { randomBytes } from 'node:crypto';

export type ApiResponse<T = unknown> = { status: number; body: T; headers: Headers };

export type ErrorBody = { error: { code: string; message: string; requestId: string; details?: Array<{ path: string; message: string }> } };

export type TokenPair = {
  accessToken: string;
  refreshToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  refreshExpiresIn: number;
  sessionId: string;
};

export const createApi = (baseUrl: string) => {
  const request = async <T = unknown>(
    method: string,
    path: string,
    options: { body?: unknown; token?: string; headers?: Record<string, string> } = {},
  ): Promise<ApiResponse<T>> => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T, headers: response.headers };
  };

  const api = {
    request,
    get: <T = unknown>(path: string, token?: string, headers?: Record<string, string>) => request<T>('GET', path, { token, headers }),
    post: <T = unknown>(path: string, body?: unknown, token?: string, headers?: Record<string, string>) =>
      request<T>('POST', path, { body, token, headers }),
    delete: <T = unknown>(path: string, token?: string) => request<T>('DELETE', path, { token }),

    /** Registers a fresh account with a unique address. */
    register: async (overrides: Partial<{ email: string; password: string; displayName: string }> = {}) => {
      const account = {
        email: `player-${randomBytes(6).toString('hex')}@example.test`,
        password: `pw-${randomBytes(12).toString('base64url')}`,
        displayName: 'Test Player',
        ...overrides,
      };
      const response = await request<{ user: { id: string } }>('POST', '/auth/register', { body: account });
      if (response.status !== 201) throw new Error(`register failed: ${response.status} ${JSON.stringify(response.body)}`);
      return { ...account, id: response.body.user.id };
    },

    /** Signs in and returns the token pair; fails the test helper on anything but 200 with a pair. */
    login: async (account: { email: string; password: string }, headers?: Record<string, string>) => {
      const response = await request<TokenPair>('POST', '/auth/login', {
        body: { email: account.email, password: account.password },
        headers,
      });
      if (response.status !== 200 || !response.body.accessToken) {
        throw new Error(`login failed: ${response.status} ${JSON.stringify(response.body)}`);
      }
      return response.body;
    },
  };
  return api;
};

export type Api = ReturnType<typeof createApi>;
