// Copy text for the user, and say so.
import { Clipboard, Notification } from "@jupyterlab/apputils";

/** Put `text` on the system clipboard and confirm with a short notification naming `what`. */
export function copyText(text: string, what: string): void {
  Clipboard.copyToSystem(text);
  Notification.success(`${what} copied to the clipboard`, { autoClose: 3000 });
}
