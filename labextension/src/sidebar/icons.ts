// The sidebar tab's icon: three stacked server racks with a signal dot, themed by JupyterLab.
import { LabIcon } from "@jupyterlab/ui-components";

const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a1 1 0 0 1 1 1v4a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zm1 2v2h9V5H5zm11 .5a1 1 0 1 0 2 0 1 1 0 0 0-2 0z"/>
    <path d="M4 10h16a1 1 0 0 1 1 1v4a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1v-4a1 1 0 0 1 1-1zm1 2v2h9v-2H5zm11 .5a1 1 0 1 0 2 0 1 1 0 0 0-2 0z"/>
    <path d="M11 17h2v2h6v2H5v-2h6z"/>
  </g>
</svg>`;

/** The "Model serving" sidebar icon. */
export const servingIcon = new LabIcon({ name: "nstarx-jupyter:serving", svgstr });
