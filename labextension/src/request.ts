// One way to call the server extension: the Jupyter server's own connection settings (token,
// XSRF header, base URL), and a typed error carrying the server's message. A call names a route
// of `Routes` (src/routes.ts), which fixes its path's parameters, its body and its answer's type.
import { URLExt } from "@jupyterlab/coreutils";
import { ServerConnection } from "@jupyterlab/services";
import { routeTarget } from "./routes";
import type { AnswerOf, CallOf, Route } from "./routes";

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

/** Call `route` under the namespace; its answer, of the type the route table gives it.
 *
 * The one place JSON becomes a type: the route's, which the table holds to the server's
 * (tests/unit/labapi/test_route_types.py); no caller picks a type of its own. */
export async function requestAPI<R extends Route>(
  route: R,
  call: CallOf<R>,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
): Promise<AnswerOf<R>> {
  const { method, path } = routeTarget(route, call);
  const init: RequestInit =
    call.body === undefined ? { method } : { method, body: JSON.stringify(call.body) };
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
  return body as AnswerOf<R>;
}
