// Pipelines as documents: the `*.pipeline.json` file type, its editor, and "New pipeline" in
// the launcher, the File > New menu, the file browser's context menu and the command palette.
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin,
} from "@jupyterlab/application";
import { ICommandPalette, WidgetTracker } from "@jupyterlab/apputils";
import { IDefaultFileBrowser } from "@jupyterlab/filebrowser";
import { ILauncher } from "@jupyterlab/launcher";
import { IMainMenu } from "@jupyterlab/mainmenu";
import type { Contents } from "@jupyterlab/services";
import { EXTENSION, FILE_TYPE, starterText } from "./file";
import { pipelineIcon } from "./icon";
import { PipelineFactory, type PipelineDocument } from "./widget";

const FACTORY = "Pipeline Editor";
const CATEGORY = "Model serving";
export const NEW_PIPELINE = "nstarx:new-pipeline";

async function createPipeline(app: JupyterFrontEnd, cwd: string): Promise<void> {
  const contents = app.serviceManager.contents;
  const model: Contents.IModel = await contents.newUntitled({
    path: cwd,
    type: "file",
    ext: EXTENSION,
  });
  await contents.save(model.path, {
    type: "file",
    format: "text",
    content: starterText(model.path),
  });
  await app.commands.execute("docmanager:open", { path: model.path, factory: FACTORY });
}

export const pipelinePlugin: JupyterFrontEndPlugin<void> = {
  id: "nstarx-jupyter:pipeline",
  description: "Opens *.pipeline.json files in the pipeline editor.",
  autoStart: true,
  optional: [ILauncher, IMainMenu, ICommandPalette, IDefaultFileBrowser, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    menu: IMainMenu | null,
    palette: ICommandPalette | null,
    browser: IDefaultFileBrowser | null,
    restorer: ILayoutRestorer | null,
  ) => {
    app.docRegistry.addFileType({
      name: FILE_TYPE,
      displayName: "Pipeline",
      extensions: [EXTENSION],
      mimeTypes: ["application/json"],
      contentType: "file",
      fileFormat: "text",
      icon: pipelineIcon,
    });
    const factory = new PipelineFactory({
      name: FACTORY,
      label: "Pipeline Editor",
      fileTypes: [FILE_TYPE],
      defaultFor: [FILE_TYPE],
      modelName: "text",
    });
    app.docRegistry.addWidgetFactory(factory);

    const tracker = new WidgetTracker<PipelineDocument>({ namespace: "nstarx-pipeline" });
    factory.widgetCreated.connect((_, widget) => {
      widget.title.icon = pipelineIcon;
      void tracker.add(widget);
      widget.context.pathChanged.connect(() => void tracker.save(widget));
    });
    if (restorer) {
      void restorer.restore(tracker, {
        command: "docmanager:open",
        args: (widget) => ({ path: widget.context.path, factory: FACTORY }),
        name: (widget) => widget.context.path,
      });
    }

    app.commands.addCommand(NEW_PIPELINE, {
      label: (args) => (args.isPalette ? "New Pipeline" : "Pipeline"),
      caption: "Create a new inference pipeline (*.pipeline.json) and open it in the editor",
      icon: (args) => (args.isPalette ? undefined : pipelineIcon),
      execute: async (args) => {
        const cwd = typeof args.cwd === "string" ? args.cwd : (browser?.model.path ?? "");
        await createPipeline(app, cwd);
      },
    });
    launcher?.add({ command: NEW_PIPELINE, category: CATEGORY, rank: 1 });
    menu?.fileMenu.newMenu.addGroup([{ command: NEW_PIPELINE }], 40);
    palette?.addItem({ command: NEW_PIPELINE, category: CATEGORY, args: { isPalette: true } });
    app.contextMenu.addItem({
      command: NEW_PIPELINE,
      selector: ".jp-DirListing-content",
      rank: 53,
    });
  },
};
