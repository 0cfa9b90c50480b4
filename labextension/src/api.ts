// The server extension's calls: each names its route (src/routes.ts), which gives its types.
import type { DeployRequest, KeyCreate } from "./generated/api";
import type { PipelineSpec } from "./generated/pipeline";
import { requestAPI } from "./request";
import { LOCAL, whereQuery } from "./sidebar/where";
import type { Where } from "./sidebar/where";

export type * from "./generated/api";

/** A spec as a JSON object body (the lab API's models take it as `{[field]: unknown}`). */
function asBody(spec: PipelineSpec): Record<string, unknown> {
  return { ...spec };
}

export const api = {
  server: () => requestAPI("GET server", {}),
  startServer: () => requestAPI("POST server", {}),

  models: (search = "") =>
    requestAPI("GET models", { query: search ? new URLSearchParams({ search }).toString() : "" }),
  versions: (model: string) =>
    requestAPI("GET models/{name}/versions", { params: { name: model } }),

  // Deployments: the local server's, or a cluster's (`where`: a kubeconfig context, a namespace).
  contexts: () => requestAPI("GET contexts", {}),
  deployments: (where: Where = LOCAL) =>
    requestAPI("GET deployments", { query: whereQuery(where) }),
  deployment: (dep: string, where: Where = LOCAL) =>
    requestAPI("GET deployments/{name}", { params: { name: dep }, query: whereQuery(where) }),
  deploy: (form: DeployRequest, where: Where = LOCAL) =>
    requestAPI("POST deployments", { body: form, query: whereQuery(where) }),
  remove: (dep: string, where: Where = LOCAL) =>
    requestAPI("DELETE deployments/{name}", { params: { name: dep }, query: whereQuery(where) }),
  setCanary: (dep: string, percent: number, where: Where = LOCAL) =>
    requestAPI("PUT deployments/{name}/traffic", {
      params: { name: dep },
      body: { canary_percent: percent },
      query: whereQuery(where),
    }),
  promote: (dep: string, where: Where = LOCAL) =>
    requestAPI("POST deployments/{name}/promote", {
      params: { name: dep },
      query: whereQuery(where),
    }),
  rollback: (dep: string, where: Where = LOCAL) =>
    requestAPI("POST deployments/{name}/rollback", {
      params: { name: dep },
      query: whereQuery(where),
    }),
  snippets: (dep: string, where: Where = LOCAL) =>
    requestAPI("GET deployments/{name}/snippets", {
      params: { name: dep },
      query: whereQuery(where),
    }),
  logs: (dep: string, where: Where = LOCAL) =>
    requestAPI("GET deployments/{name}/logs", { params: { name: dep }, query: whereQuery(where) }),
  trend: (dep: string, since: "hour" | "day") =>
    requestAPI("GET deployments/{name}/trend", {
      params: { name: dep },
      query: new URLSearchParams({ since }).toString(),
    }),

  keys: () => requestAPI("GET keys", {}),
  createKey: (key: KeyCreate) => requestAPI("POST keys", { body: key }),
  revokeKey: (id: string) => requestAPI("DELETE keys/{id}", { params: { id } }),

  library: () => requestAPI("GET pipelines/library", {}),
  check: (spec: PipelineSpec) =>
    requestAPI("POST pipelines/check", { body: { spec: asBody(spec) } }),
  run: (spec: PipelineSpec, sample: Record<string, unknown>) =>
    requestAPI("POST pipelines/run", { body: { spec: asBody(spec), sample } }),
  pipelineVersions: (pipeline: string) =>
    requestAPI("GET pipelines/{name}/versions", { params: { name: pipeline } }),
  savePipeline: (pipeline: string, spec: PipelineSpec, message: string) =>
    requestAPI("POST pipelines/{name}/versions", {
      params: { name: pipeline },
      body: { spec: asBody(spec), message },
    }),
  loadPipeline: (pipeline: string, version: number | string) =>
    requestAPI("GET pipelines/{name}/versions/{version}", {
      params: { name: pipeline, version: String(version) },
    }),
  deployPipeline: (spec: PipelineSpec, sample: Record<string, unknown>) =>
    requestAPI("POST pipelines/deploy", { body: { spec: asBody(spec), sample } }),
};
