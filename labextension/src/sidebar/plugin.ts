// The "Model serving" sidebar: registered in the left area, restored with the layout, and
// reachable from the command palette.
import { ILayoutRestorer } from "@jupyterlab/application";
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { ICommandPalette } from "@jupyterlab/apputils";
import { promptForKey } from "./KeyDialog";
import { openLogs } from "./logs";
import { reportError } from "./notify";
import { SidebarStore } from "./store";
import { SidebarWidget } from "./widget";

const CATEGORY = "Model serving";

/** The palette's commands. */
export const CommandIds = {
  open: "nstarx:open-sidebar",
  refresh: "nstarx:refresh",
  startServer: "nstarx:start-server",
  createKey: "nstarx:create-key",
} as const;

function activate(
  app: JupyterFrontEnd,
  restorer: ILayoutRestorer | null,
  palette: ICommandPalette | null,
): void {
  const store = new SidebarStore();
  const widget = new SidebarWidget({
    store,
    openLogs: (logs) => {
      openLogs(app.shell, logs);
    },
  });
  app.shell.add(widget, "left", { rank: 850 });
  restorer?.add(widget, widget.id);

  const { commands } = app;
  commands.addCommand(CommandIds.open, {
    label: "Open the Model Serving Sidebar",
    execute: () => {
      app.shell.activateById(widget.id);
    },
  });
  commands.addCommand(CommandIds.refresh, {
    label: "Refresh Models, Deployments and Keys",
    execute: () => store.refresh(),
  });
  commands.addCommand(CommandIds.startServer, {
    label: "Start the Local Model Server",
    execute: () => store.startServer(),
  });
  commands.addCommand(CommandIds.createKey, {
    label: "Create an API Key…",
    execute: () =>
      promptForKey(store).catch((error: unknown) => {
        reportError("Could not create the API key", error);
      }),
  });
  for (const command of Object.values(CommandIds)) {
    palette?.addItem({ command, category: CATEGORY });
  }
}

export const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: "nstarx-jupyter:sidebar",
  description: "The model serving sidebar: models, deployments and API keys.",
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate,
};
