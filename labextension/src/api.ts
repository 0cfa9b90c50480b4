// The server extension's calls, typed with the models Python generates (src/generated/api.ts).
import type {
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

export type * from "./generated/api";

const name = encodeURIComponent;

export const api = {
  server: () => requestAPI<ServerInfo>("server"),
  startServer: () => requestAPI<ServerInfo>("server", json("POST")),

  models: (search = "") =>
    requestAPI<ModelSummary[]>(search ? `models?search=${name(search)}` : "models"),
  versions: (model: string) => requestAPI<ModelVersionInfo[]>(`models/${name(model)}/versions`),

  deployments: () => requestAPI<DeploymentInfo[]>("deployments"),
  deployment: (dep: string) => requestAPI<DeploymentInfo>(`deployments/${name(dep)}`),
  deploy: (form: DeployRequest) => requestAPI<DeployResult>("deployments", json("POST", form)),
  remove: (dep: string) => requestAPI<undefined>(`deployments/${name(dep)}`, json("DELETE")),
  setCanary: (dep: string, percent: number) =>
    requestAPI<DeploymentInfo>(
      `deployments/${name(dep)}/traffic`,
      json("PUT", { canary_percent: percent }),
    ),
  promote: (dep: string) =>
    requestAPI<DeploymentInfo>(`deployments/${name(dep)}/promote`, json("POST")),
  rollback: (dep: string) =>
    requestAPI<DeploymentInfo>(`deployments/${name(dep)}/rollback`, json("POST")),
  snippets: (dep: string) => requestAPI<Snippets>(`deployments/${name(dep)}/snippets`),
  logs: (dep: string) => requestAPI<Logs>(`deployments/${name(dep)}/logs`),
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
