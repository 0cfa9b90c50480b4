// Which deployments the sidebar shows and steers: the local server's, or a KServe cluster's
// (a kubeconfig context and a namespace). Kept in the browser's localStorage, and sent with
// every deployment call as `?target=&context=&namespace=` (labapi's `LabHandler.where`).

/** Where deployments run: `local`, or `kserve` through a kubeconfig context. */
export interface Where {
  readonly target: "local" | "kserve";
  /** The kubeconfig context (null: the kubeconfig's current one; always null for local). */
  readonly context: string | null;
  /** The Kubernetes namespace (null: the context's default; always null for local). */
  readonly namespace: string | null;
}

export const LOCAL: Where = { target: "local", context: null, namespace: null };

/** The localStorage key of the choice. */
export const WHERE_KEY = "nstarx-jupyter:sidebar-where";

/** A namespace name as Kubernetes takes it: a DNS label (RFC 1123), at most 63 characters. */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Longest context name kept (kubeconfig names are short; the server refuses unknown ones). */
const MAX_CONTEXT = 253;

/** Why `text` is no namespace name, or null when it is one. */
export function namespaceProblem(text: string): string | null {
  if (text.length === 0) return "a namespace is needed";
  if (text.length > 63) return "a namespace has at most 63 characters";
  if (!NAMESPACE.test(text)) return "lower-case letters, digits and '-', not at either end";
  return null;
}

/** The query string of `where` (empty for the local server, the routes' default). */
export function whereQuery(where: Where): string {
  if (where.target === "local") return "";
  const params = new URLSearchParams({ target: where.target });
  if (where.context !== null) params.set("context", where.context);
  if (where.namespace !== null) params.set("namespace", where.namespace);
  return params.toString();
}

/** Whether two choices mean the same deployments. */
export function sameWhere(a: Where, b: Where): boolean {
  return a.target === b.target && a.context === b.context && a.namespace === b.namespace;
}

/** How the header names the choice: `Local`, or `context / namespace`. */
export function whereLabel(where: Where): string {
  if (where.target === "local") return "Local";
  return `${where.context ?? "current context"} / ${where.namespace ?? "default namespace"}`;
}

function text(value: unknown, problem: (s: string) => string | null): string | null {
  return typeof value === "string" && problem(value) === null ? value : null;
}

/** A stored choice read back; anything malformed (edited, an older format) is the local one. */
export function parseWhere(stored: string | null): Where {
  if (stored === null) return LOCAL;
  let doc: unknown;
  try {
    doc = JSON.parse(stored);
  } catch {
    return LOCAL;
  }
  if (typeof doc !== "object" || doc === null) return LOCAL;
  const fields = doc as Record<string, unknown>;
  if (fields.target !== "kserve") return LOCAL;
  const context = text(fields.context, (s) =>
    s.length > 0 && s.length <= MAX_CONTEXT ? null : "bad",
  );
  return { target: "kserve", context, namespace: text(fields.namespace, namespaceProblem) };
}

/** The choice kept in `storage` (the local one when there is none, or no storage at all). */
export function loadWhere(storage: Pick<Storage, "getItem"> | null): Where {
  try {
    return parseWhere(storage?.getItem(WHERE_KEY) ?? null);
  } catch {
    return LOCAL; // storage refused (a privacy mode): nothing was kept
  }
}

/** Keep `where` in `storage`; a storage that refuses it only loses the choice on reload. */
export function saveWhere(storage: Pick<Storage, "setItem"> | null, where: Where): void {
  try {
    storage?.setItem(WHERE_KEY, JSON.stringify(where));
  } catch {
    // full or refused: the choice holds for this page only
  }
}

/** The stages of a deployment on its way to Ready, as the backend reports them (`Stage`). */
export const STAGES = ["accepted", "scheduled", "loaded", "ready"] as const;

type StageName = (typeof STAGES)[number] | "failed";

const STAGE_LABELS: Record<StageName, string> = {
  accepted: "accepted",
  scheduled: "predictor scheduled",
  loaded: "model loaded",
  ready: "ready",
  failed: "failed",
};

/** One step of the progress line: passed, the one under way, still to come, or failed. */
export interface Step {
  readonly stage: StageName;
  readonly label: string;
  readonly state: "done" | "current" | "todo" | "failed";
}

/** The progress line of a deployment not yet Ready; null when there is none to show.
 *
 * `stage` is how far the current revision got (null where the backend reports only a status,
 * as the local server does). A failure names no stage it failed at: it follows `accepted`.
 */
export function progressSteps(stage: string | null, status: string): Step[] | null {
  if (stage === null || status === "Ready" || status === "Idle") return null;
  if (stage === "failed") {
    return [
      { stage: "accepted", label: STAGE_LABELS.accepted, state: "done" },
      { stage: "failed", label: STAGE_LABELS.failed, state: "failed" },
    ];
  }
  const reached = STAGES.findIndex((name) => name === stage);
  if (reached < 0 || stage === "ready") return null;
  return STAGES.map((name, index) => ({
    stage: name,
    label: STAGE_LABELS[name],
    state: index <= reached ? "done" : index === reached + 1 ? "current" : "todo",
  }));
}
