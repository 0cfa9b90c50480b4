// Every failed call ends here: a readable notification with the server's message, never a
// silent failure and never an unhandled rejection.
import { Notification } from "@jupyterlab/apputils";
import { ApiError } from "../request";

/** The message a person can act on: the server's own, or the error's text. */
export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Show `what` failed and why. */
export function reportError(what: string, error: unknown): void {
  Notification.error(`${what}: ${messageOf(error)}`, { autoClose: 8000 });
}

/** Run `call`; on failure report it as `what` and answer undefined. */
export async function attempt<T>(what: string, call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    reportError(what, error);
    return undefined;
  }
}
