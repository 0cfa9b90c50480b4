// One way to call the server extension: the Jupyter server's own connection settings (token,
// XSRF header, base URL), and a typed error carrying the server's message.
import { URLExt } from "@jupyterlab/coreutils";
import { ServerConnection } from "@jupyterlab/services";

/** The server extension's URL namespace under the Jupyter server's base URL. */
export const NAMESPACE = "nstarx";

/** A failed call: the HTTP status and the server's `{"error": ...}` message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

function messageOf(body: unknown, fallback: string): string {
  if (typeof body === "object" && body !== null) {
    const error = (body as Record<string, unknown>).error;
    if (typeof error === "string" && error) return error;
    const message = (body as Record<string, unknown>).message;
    if (typeof message === "string" && message) return message;
  }
  return fallback;
}

/** Call `path` under the namespace; the answer's JSON as `T` (undefined for 204). */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, NAMESPACE, path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(0, `the Jupyter server did not answer: ${String(error)}`);
  }
  const text = await response.text();
  let body: unknown = undefined;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (!response.ok) {
    const fallback = `${String(response.status)} ${response.statusText}`.trim();
    throw new ApiError(response.status, messageOf(body, fallback));
  }
  return body as T;
}

/** A JSON request body. */
export function json(method: string, body?: unknown): RequestInit {
  return body === undefined ? { method } : { method, body: JSON.stringify(body) };
}
