// The server extension's calls, typed with the models Python generates (src/generated/api.ts).
import type {
  Contexts,
  DeploymentInfo,
  DeployRequest,
  DeployResult,
  KeyCreate,
  KeyCreated,
  KeyInfo,
  Logs,
  ModelSummary,
  ModelVersionInfo,
  PipelineCheckResult,
  PipelineDeployed,
  PipelineLibrary,
  PipelineLoaded,
  PipelineSaved,
  PipelineVersion,
  ServerInfo,
  Snippets,
  Trend,
} from "./generated/api";
import { json, requestAPI } from "./request";
import { LOCAL, withWhere } from "./sidebar/where";
import type { Where } from "./sidebar/where";

export type * from "./generated/api";

const name = encodeURIComponent;

export const api = {
  server: () => requestAPI<ServerInfo>("server"),
  startServer: () => requestAPI<ServerInfo>("server", json("POST")),

  models: (search = "") =>
    requestAPI<ModelSummary[]>(search ? `models?search=${name(search)}` : "models"),
  versions: (model: string) => requestAPI<ModelVersionInfo[]>(`models/${name(model)}/versions`),

  // Deployments: the local server's, or a cluster's (`where`: a kubeconfig context, a namespace).
  contexts: () => requestAPI<Contexts>("contexts"),
  deployments: (where: Where = LOCAL) =>
    requestAPI<DeploymentInfo[]>(withWhere("deployments", where)),
  deployment: (dep: string, where: Where = LOCAL) =>
    requestAPI<DeploymentInfo>(withWhere(`deployments/${name(dep)}`, where)),
  deploy: (form: DeployRequest, where: Where = LOCAL) =>
    requestAPI<DeployResult>(withWhere("deployments", where), json("POST", form)),
  remove: (dep: string, where: Where = LOCAL) =>
    requestAPI<undefined>(withWhere(`deployments/${name(dep)}`, where), json("DELETE")),
  setCanary: (dep: string, percent: number, where: Where = LOCAL) =>
    requestAPI<DeploymentInfo>(
      withWhere(`deployments/${name(dep)}/traffic`, where),
      json("PUT", { canary_percent: percent }),
    ),
  promote: (dep: string, where: Where = LOCAL) =>
    requestAPI<DeploymentInfo>(withWhere(`deployments/${name(dep)}/promote`, where), json("POST")),
  rollback: (dep: string, where: Where = LOCAL) =>
    requestAPI<DeploymentInfo>(withWhere(`deployments/${name(dep)}/rollback`, where), json("POST")),
  snippets: (dep: string, where: Where = LOCAL) =>
    requestAPI<Snippets>(withWhere(`deployments/${name(dep)}/snippets`, where)),
  logs: (dep: string, where: Where = LOCAL) =>
    requestAPI<Logs>(withWhere(`deployments/${name(dep)}/logs`, where)),
  trend: (dep: string, since: "hour" | "day") =>
    requestAPI<Trend>(`deployments/${name(dep)}/trend?since=${since}`),

  keys: () => requestAPI<KeyInfo[]>("keys"),
  createKey: (key: KeyCreate) => requestAPI<KeyCreated>("keys", json("POST", key)),
  revokeKey: (id: string) => requestAPI<KeyInfo>(`keys/${name(id)}`, json("DELETE")),

  library: () => requestAPI<PipelineLibrary>("pipelines/library"),
  check: (spec: unknown) =>
    requestAPI<PipelineCheckResult>("pipelines/check", json("POST", { spec })),
  run: (spec: unknown, sample: Record<string, unknown>) =>
    requestAPI<unknown>("pipelines/run", json("POST", { spec, sample })),
  pipelineVersions: (pipeline: string) =>
    requestAPI<PipelineVersion[]>(`pipelines/${name(pipeline)}/versions`),
  savePipeline: (pipeline: string, spec: unknown, message: string) =>
    requestAPI<PipelineSaved>(
      `pipelines/${name(pipeline)}/versions`,
      json("POST", { spec, message }),
    ),
  loadPipeline: (pipeline: string, version: number | string) =>
    requestAPI<PipelineLoaded>(`pipelines/${name(pipeline)}/versions/${name(String(version))}`),
  deployPipeline: (spec: unknown, sample: Record<string, unknown>) =>
    requestAPI<PipelineDeployed>("pipelines/deploy", json("POST", { spec, sample })),
};
