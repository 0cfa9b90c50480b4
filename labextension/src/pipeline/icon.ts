// The pipeline file type's icon: three steps joined left to right.
import { LabIcon } from "@jupyterlab/ui-components";

const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="1" y="9" width="6" height="6" rx="1"/>
    <rect x="9" y="3" width="6" height="6" rx="1"/>
    <rect x="9" y="15" width="6" height="6" rx="1"/>
    <rect x="17" y="9" width="6" height="6" rx="1"/>
    <path d="M7 11.5h1.2l.8-5.5h.1v1H8.9l-.6 4.5zM7 12.5h1.2l.8 5.5h.1v-1H8.9l-.6-4.5zM15 6h.9l.8 5.5H17v1h-1.1L15 7zM15 18h.9l.8-5.5H17v-1h-1.1L15 17z"/>
  </g>
</svg>`;

export const pipelineIcon = new LabIcon({ name: "nstarx-jupyter:pipeline", svgstr: svg });
