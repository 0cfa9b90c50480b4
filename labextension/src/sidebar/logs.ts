// A deployment's events in a main-area tab, one per deployment, replaced when reopened.
import { MainAreaWidget } from "@jupyterlab/apputils";
import type { JupyterFrontEnd } from "@jupyterlab/application";
import { Widget } from "@lumino/widgets";
import type { Logs } from "../api";

function logsContent(logs: Logs): Widget {
  const content = new Widget();
  content.addClass("nstarx-logs");
  const pre = document.createElement("pre");
  pre.textContent = logs.lines.length ? logs.lines.join("\n") : "No events yet.";
  content.node.appendChild(pre);
  return content;
}

/** Show `logs` in the main area (the tab of an earlier look at the same deployment is reused). */
export function openLogs(shell: JupyterFrontEnd.IShell, logs: Logs): void {
  const id = `nstarx-logs-${logs.name}`;
  for (const widget of shell.widgets("main")) {
    if (widget.id === id) widget.dispose();
  }
  const widget = new MainAreaWidget({ content: logsContent(logs) });
  widget.id = id;
  widget.title.label = `Logs: ${logs.name}`;
  widget.title.closable = true;
  shell.add(widget, "main");
  shell.activateById(id);
}
