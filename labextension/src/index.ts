// The lab extension's plugins: the deployments sidebar and the pipeline editor as a document.
import type { JupyterFrontEndPlugin } from "@jupyterlab/application";
import { pipelinePlugin } from "./pipeline/plugin";
import { sidebarPlugin } from "./sidebar/plugin";

const plugins: JupyterFrontEndPlugin<void>[] = [sidebarPlugin, pipelinePlugin];

export default plugins;
