// Every route of the server extension (nstarx_jupyter/labapi/routes.py), by method and path, with
// the body it reads and the answer it writes, in the types Python generates (src/generated/api.ts).
// `requestAPI` takes its types from here, so no call names an answer type of its own.
// tests/unit/labapi/test_route_types.py holds this table to the server's: the same routes and
// methods, each body the model its handler reads, each answer its service method's return type.
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
  PipelineCheck,
  PipelineCheckResult,
  PipelineDeployed,
  PipelineLibrary,
  PipelineLoaded,
  PipelineRun,
  PipelineSave,
  PipelineSaved,
  PipelineVersion,
  ServerInfo,
  Snippets,
  TrafficChange,
  Trend,
} from "./generated/api";

/** `"METHOD path"` (`{name}`: one path segment) → `{ body?, answer }`. */
export interface Routes {
  "GET server": { answer: ServerInfo };
  "POST server": { answer: ServerInfo };
  "GET models": { answer: ModelSummary[] };
  "GET models/{name}/versions": { answer: ModelVersionInfo[] };
  "GET contexts": { answer: Contexts };
  "GET deployments": { answer: DeploymentInfo[] };
  "POST deployments": { body: DeployRequest; answer: DeployResult };
  "GET deployments/{name}": { answer: DeploymentInfo };
  "DELETE deployments/{name}": { answer: undefined };
  "PUT deployments/{name}/traffic": { body: TrafficChange; answer: DeploymentInfo };
  "POST deployments/{name}/promote": { answer: DeploymentInfo };
  "POST deployments/{name}/rollback": { answer: DeploymentInfo };
  "GET deployments/{name}/snippets": { answer: Snippets };
  "GET deployments/{name}/logs": { answer: Logs };
  "GET deployments/{name}/trend": { answer: Trend };
  "GET keys": { answer: KeyInfo[] };
  "POST keys": { body: KeyCreate; answer: KeyCreated };
  "DELETE keys/{id}": { answer: KeyInfo };
  "GET pipelines/library": { answer: PipelineLibrary };
  "POST pipelines/check": { body: PipelineCheck; answer: PipelineCheckResult };
  "POST pipelines/run": { body: PipelineRun; answer: Record<string, unknown> };
  "POST pipelines/deploy": { body: PipelineRun; answer: PipelineDeployed };
  "GET pipelines/{name}/versions": { answer: PipelineVersion[] };
  "POST pipelines/{name}/versions": { body: PipelineSave; answer: PipelineSaved };
  "GET pipelines/{name}/versions/{version}": { answer: PipelineLoaded };
}

/** A route of the table: `"GET deployments/{name}"`. */
export type Route = keyof Routes;

/** The answer `route` sends (undefined for a 204). */
export type AnswerOf<R extends Route> = Routes[R]["answer"];

type PathOf<R extends Route> = R extends `${string} ${infer Path}` ? Path : never;
type Holes<P extends string> = P extends `${string}{${infer Hole}}${infer Rest}`
  ? Hole | Holes<Rest>
  : never;

/** What a call of `route` passes: a value for each `{hole}` of its path, its body if it takes
 * one, and a query string (`where`'s, a search). */
export type CallOf<R extends Route> = { query?: string } & ([Holes<PathOf<R>>] extends [never]
  ? { params?: undefined }
  : { params: Record<Holes<PathOf<R>>, string> }) &
  (Routes[R] extends { body: infer Body } ? { body: Body } : { body?: undefined });

/** The method and the path (holes filled in, URI-encoded; the query appended) of a call. */
export function routeTarget<R extends Route>(
  route: R,
  call: CallOf<R>,
): { method: string; path: string } {
  const space = route.indexOf(" ");
  const params: Partial<Record<string, string>> = call.params ?? {};
  const path = route.slice(space + 1).replace(/\{(\w+)\}/g, (_hole, key: string) => {
    const value = params[key];
    if (value === undefined) throw new Error(`${route}: no value for {${key}}`);
    return encodeURIComponent(value);
  });
  return { method: route.slice(0, space), path: call.query ? `${path}?${call.query}` : path };
}
